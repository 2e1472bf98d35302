"""SQL records of visits (sessions) and the pages they viewed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pools.models import Base, utcnow

UTM_FIELDS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
    "utm_source_platform",
    "utm_creative_format",
    "utm_marketing_tactic",
)
CLICK_ID_FIELDS = ("gclid", "gbraid", "wbraid", "msclkid", "fbclid", "ttclid", "li_fat_id", "dclid")


class VisitAttribution:
    """What a visit tells about where a caller came from; a call copies it from its session."""

    landing_url: Mapped[str | None] = mapped_column(Text)
    landing_path: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    referrer_domain: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    medium: Mapped[str | None] = mapped_column(String(255))
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_term: Mapped[str | None] = mapped_column(String(255))
    utm_content: Mapped[str | None] = mapped_column(String(255))
    utm_id: Mapped[str | None] = mapped_column(String(255))
    utm_source_platform: Mapped[str | None] = mapped_column(String(255))
    utm_creative_format: Mapped[str | None] = mapped_column(String(255))
    utm_marketing_tactic: Mapped[str | None] = mapped_column(String(255))
    gclid: Mapped[str | None] = mapped_column(String(255))
    gbraid: Mapped[str | None] = mapped_column(String(255))
    wbraid: Mapped[str | None] = mapped_column(String(255))
    msclkid: Mapped[str | None] = mapped_column(String(255))
    fbclid: Mapped[str | None] = mapped_column(String(255))
    ttclid: Mapped[str | None] = mapped_column(String(255))
    li_fat_id: Mapped[str | None] = mapped_column(String(255))
    dclid: Mapped[str | None] = mapped_column(String(255))
    click_id_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    ga_client_id: Mapped[str | None] = mapped_column(String(64))
    ga_session_id: Mapped[str | None] = mapped_column(String(32))  # from the _ga_<id> cookie
    fbp: Mapped[str | None] = mapped_column(String(255))  # the _fbp cookie, never invented
    # True/False: the visitor's choice on a site that asks; None: the site does not ask.
    ad_consent: Mapped[bool | None] = mapped_column(Boolean)
    keyword: Mapped[str | None] = mapped_column(String(255))
    device_type: Mapped[str | None] = mapped_column(String(16))
    browser: Mapped[str | None] = mapped_column(String(64))
    browser_version: Mapped[str | None] = mapped_column(String(32))
    os: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(128))


ATTRIBUTION_FIELDS = tuple(
    name for name, value in vars(VisitAttribution).items() if not name.startswith("_")
    and name != "__annotations__")


class Visit(VisitAttribution, Base):
    """A web session: everything known about the visit, captured once at its start."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_site_created", "site_id", "created_at"),
        Index("ix_visits_visitor", "visitor_id"),
        Index("ix_visits_site_day", "site_id", "local_day"),
        # Session counts in attribution reports (migration 0006).
        Index("ix_visits_report_source", "source", "medium", "local_day", "site_id"),
        Index("ix_visits_report_day", "local_day", "source", "medium", "site_id"),
    )

    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    local_day: Mapped[dt.date | None] = mapped_column(Date, default=None)  # in the site's zone
    user_agent: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(45))
    fallback_reason: Mapped[str | None] = mapped_column(String(32))
    # Page views seen, stored or not (past pools.leases.MAX_PAGE_VIEWS only counted);
    # None before migration 0008.
    page_view_count: Mapped[int | None] = mapped_column(Integer, default=None)


class PageView(Base):
    """A page the visitor viewed during the session (landing page included)."""

    __tablename__ = "page_views"
    __table_args__ = (
        UniqueConstraint("session_id", "viewed_at_ms", "url", name="uq_page_views"),
        Index("ix_page_views_session", "session_id", "viewed_at_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    viewed_at_ms: Mapped[int] = mapped_column(BigInteger)


class StaticNumber(Base):
    """A number printed in one place (a radio spot, a billboard): its calls carry its source."""

    __tablename__ = "static_numbers"
    __table_args__ = (
        Index("uq_static_numbers_live_number", "number", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
        Index("ix_static_numbers_number", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    number: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(255))
    medium: Mapped[str] = mapped_column(String(255))
    campaign: Mapped[str | None] = mapped_column(String(255), default=None)
    label: Mapped[str | None] = mapped_column(String(255), default=None)
    publisher: Mapped[str | None] = mapped_column(String(200), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    record_calls: Mapped[bool] = mapped_column(Boolean, default=False)
    qualification: Mapped[dict] = mapped_column(default=dict)
    revenue: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    payout: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # A pay-per-call plan (routing.models.RoutingPlan) replaces ``destination`` when set.
    routing_plan_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(default=None)


# Filter and metric columns the report indexes carry after their leading columns.
REPORT_COLUMNS = ("site_id", "pool_id", "qualified", "repeat_caller", "answered_at", "duration",
                  "revenue", "payout")


class Call(VisitAttribution, Base):
    """One phone call to a tracking number, with how it was matched and whether it qualifies."""

    # Not a column: set when a call is first built (calls._new_call), its site's count of
    # enabled webhook subscriptions, so announcing the new call needs no query of its own.
    site_webhooks = None

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("provider", "provider_call_id", name="uq_calls_provider_id"),
        Index("ix_calls_started", "started_at"),
        Index("ix_calls_caller", "from_number", "started_at"),
        Index("ix_calls_site_started", "site_id", "started_at"),
        Index("ix_calls_site_day", "site_id", "local_day"),
        # Attribution reports (migration 0006): each covers every metric and filter column
        # but publisher (kept out so a row with long UTF-8 values stays under PostgreSQL's
        # index-row limit). Grouped by source, by day, and all callers in a range.
        Index("ix_calls_report_source", "source", "medium", "from_number", "local_day",
              *REPORT_COLUMNS),
        Index("ix_calls_report_day", "local_day", "from_number", "source", "medium",
              *REPORT_COLUMNS),
        Index("ix_calls_report_caller", "from_number", "local_day", "site_id", "pool_id",
              "qualified", "repeat_caller"),
        Index("ix_calls_session", "session_id"),  # ad ids learnt later reach matched calls
        Index("ix_calls_recording_due", "recording_status", "recording_next_try_at"),
        Index("ix_calls_review", "review_state", "started_at"),  # the review queue
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_call_id: Mapped[str] = mapped_column(String(128))
    from_number: Mapped[str] = mapped_column(String(64))
    from_valid: Mapped[bool] = mapped_column(Boolean, default=False)
    to_number: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str | None] = mapped_column(String(16), default=None)
    started_at: Mapped[dt.datetime] = mapped_column()
    # The call's date where its site is (reports group and filter by it in that zone).
    local_day: Mapped[dt.date | None] = mapped_column(Date, default=None)
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="ringing")
    status_rank: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[int | None] = mapped_column(Integer, default=None)
    # Talk time from the forwarded leg beats the whole call's length (which includes ringing).
    talk_time: Mapped[bool] = mapped_column(Boolean, default=False)
    dial_status: Mapped[str | None] = mapped_column(String(16), default=None)
    recording_url: Mapped[str | None] = mapped_column(Text, default=None)
    # The recording's copy and its analysis (attribution.insight.jobs, migration 0010):
    # status pending (announced), fetching (a worker holds it), fetched, failed or deleted.
    recording_status: Mapped[str | None] = mapped_column(String(16), default=None)
    recording_path: Mapped[str | None] = mapped_column(String(255), default=None)  # store key
    recording_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    recording_next_try_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    recording_claim: Mapped[str | None] = mapped_column(String(32), default=None)
    recording_error: Mapped[str | None] = mapped_column(Text, default=None)
    recording_fetched_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    insight: Mapped[dict | None] = mapped_column(default=None)
    # Fraud (attribution.fraud, migration 0013): the signals with the score's named
    # contributions, what was done before ringing, and the review of a held call.
    fraud_signals: Mapped[dict | None] = mapped_column(default=None)
    risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    fraud_action: Mapped[str | None] = mapped_column(String(24), default=None)
    review_state: Mapped[str | None] = mapped_column(String(16), default=None)
    review_reason: Mapped[str | None] = mapped_column(Text, default=None)
    reviewed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"), default=None)
    static_number_id: Mapped[int | None] = mapped_column(ForeignKey("static_numbers.id"),
                                                         default=None)
    session_id: Mapped[str | None] = mapped_column(String(128), default=None)
    method: Mapped[str] = mapped_column(String(16), default="unattributed")
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    explanation: Mapped[dict] = mapped_column(default=dict)
    campaign: Mapped[str | None] = mapped_column(String(255), default=None)
    label: Mapped[str | None] = mapped_column(String(255), default=None)
    publisher: Mapped[str | None] = mapped_column(String(200), default=None)

    caller_country: Mapped[str | None] = mapped_column(String(2), default=None)
    caller_region: Mapped[str | None] = mapped_column(String(64), default=None)
    caller_city: Mapped[str | None] = mapped_column(String(128), default=None)
    repeat_caller: Mapped[bool] = mapped_column(Boolean, default=False)
    first_call_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    first_touch: Mapped[dict] = mapped_column(default=dict)

    qualified: Mapped[bool] = mapped_column(Boolean, default=False)
    qualification_failures: Mapped[list] = mapped_column(default=list)
    disposition: Mapped[str | None] = mapped_column(String(32), default=None)
    disposition_value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), default=None)
    revenue: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    payout: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# Carriers whose recording links the worker knows how to fetch (attribution.insight.fetch).
RECORDING_CARRIERS = ("twilio", "telnyx")


@event.listens_for(Call.recording_url, "set")
def _recording_announced(call: Call, value, old, _initiator) -> None:
    """A carrier's new recording link queues the recording for the worker, whichever path
    set it (a webhook, the inbox replay). Links given to the generic API are only shown."""
    if value and value != old and call.provider in RECORDING_CARRIERS:
        call.recording_status, call.recording_attempts = "pending", 0
        call.recording_next_try_at, call.recording_error = None, None


class CallEvent(Base):
    """Every carrier event as received: the dedupe key, and the evidence behind a call's state."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("provider", "event_key", name="uq_call_events_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[dt.datetime] = mapped_column()
    payload: Mapped[dict] = mapped_column(default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# The conversion tables hang off calls: load them wherever these models are loaded.
from attribution.conversions import models as _conversion_models  # noqa: E402, F401
from attribution.fraud import models as _fraud_models  # noqa: E402, F401
