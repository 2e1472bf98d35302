"""SQL records of visits (sessions) and the pages they viewed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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


class Visit(Base):
    """A web session: everything known about the visit, captured once at its start."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_site_created", "site_id", "created_at"),
        Index("ix_visits_visitor", "visitor_id"),
    )

    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
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
    keyword: Mapped[str | None] = mapped_column(String(255))
    device_type: Mapped[str | None] = mapped_column(String(16))
    browser: Mapped[str | None] = mapped_column(String(64))
    browser_version: Mapped[str | None] = mapped_column(String(32))
    os: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(32))
    user_agent: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(45))
    country: Mapped[str | None] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(128))
    fallback_reason: Mapped[str | None] = mapped_column(String(32))


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
