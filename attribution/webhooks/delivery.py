"""The worker's half of outgoing webhooks: claim due deliveries, sign, POST, record.

It is the conversions outbox's scheme (``attribution.conversions.delivery``) applied to
webhook rows, and reuses its parts: the claim (one UPDATE of rows stamped with a fresh token
and a lease, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), the jittered exponential
``backoff`` that honours ``Retry-After``, the SSRF-guarded HTTP session (``outbound``) and
the credential box that opens the sealed secret.

- **At least once**: a row is ``sent`` only after a 2xx, committed right after its own
  request. A worker that dies between the POST and the commit leaves the row ``sending``;
  when its lease runs out another worker sends it again, with the same event id, which
  receivers use to drop the repeat.
- **In order per call**: a row is claimable only when no earlier row of its subscription
  and ``ordering_key`` is still open (pending, retrying or sending).
- **Disabled** after ``disable_after`` failed attempts in a row on a subscription, with the
  reason kept on it; its queued rows wait until it is enabled again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import requests
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from attribution.conversions.credentials import CredentialBox
from attribution.conversions.delivery import backoff, mask_library_logs, run_within
from attribution.conversions.destination import retry_after
from attribution.conversions.outbound import ForbiddenAddress, guarded_session, masked_url
from attribution.webhooks import signing
from attribution.webhooks.models import (
    DUE,
    OPEN,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from attribution.webhooks.subscriptions import recount, reseal
from pools.models import utcnow

log = logging.getLogger(__name__)
CLIP = 4_000  # characters of a request or response body kept in the log
USER_AGENT = "dni-webhooks/1"
NOT_SENT = {"request": {}, "response": {}, "status": None, "elapsed_ms": None}

# (session, call id, publisher or None) -> the call as that subscriber may see it via the API
CallRenderer = Callable[[Session, int, str | None], dict | None]


@dataclass(frozen=True)
class WebhookPolicy:
    """How hard to try. A subscription is disabled once ``disable_after`` attempts in a row
    (any of its deliveries) have failed over at least ``disable_after_seconds``: a long
    outage, not a short burst. A claim's lease outlasts the sends it may hold."""

    max_attempts: int = 12
    base_delay: float = 30.0
    max_delay: float = 6 * 3600.0
    lease_seconds: float = 300.0
    timeout: float = 10.0
    disable_after: int = 50
    disable_after_seconds: float = 3 * 86_400.0
    batch: int = 20
    pass_budget_seconds: float = 2.0


@dataclass
class Outcome:
    status: str  # sent, retry, failed
    detail: str = ""
    retry_after: float | None = None
    next_at: dt.datetime | None = None  # when the row is tried again (set on retry)


def basic_call_view(db: Session, call_id: int, publisher: str | None) -> dict | None:
    """A call's few plain fields: used when no renderer of the API's view is given."""
    from attribution.models import Call

    call = db.get(Call, call_id)
    if call is None or (publisher is not None and call.publisher != publisher):
        return None
    return {"id": call.id, "status": call.status, "qualified": call.qualified,
            "started_at": call.started_at.isoformat(), "duration": call.duration}


def encode(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass
class WebhookDeliverer:
    """Runs passes over the webhook queue; one per worker."""

    session_factory: sessionmaker
    policy: WebhookPolicy = field(default_factory=WebhookPolicy)
    render_call: CallRenderer | None = None
    http_session: requests.Session | None = None
    allow_hosts: tuple[str, ...] = ()  # DNI_OUTBOUND_ALLOW_HOSTS
    credentials_keys: tuple[str, ...] = ()  # DNI_CREDENTIALS_KEYS: opens the secrets
    clock: Callable[[], float] = time.time  # the signature's timestamp
    _resealed: bool = False

    @classmethod
    def from_settings(cls, session_factory: sessionmaker, settings,
                      render_call: CallRenderer | None = None) -> WebhookDeliverer:
        return cls(session_factory, render_call=render_call,
                   allow_hosts=settings.outbound_allow_hosts,
                   credentials_keys=settings.credentials_keys)

    @cached_property
    def box(self) -> CredentialBox:
        return CredentialBox(self.credentials_keys)

    # -- one pass ---------------------------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Send what is due now; returns how many deliveries were attempted."""
        now = now or utcnow()
        with self.session_factory() as db:
            if not self._resealed:  # once per worker: secrets follow a key rotation
                if reseal(db, self.box):
                    db.commit()
                self._resealed = True
            subscription_ids = list(db.scalars(
                select(WebhookDelivery.subscription_id.distinct())
                .join(WebhookSubscription,
                      WebhookSubscription.id == WebhookDelivery.subscription_id)
                .where(WebhookSubscription.enabled, self._due(now))))
        if not subscription_ids:
            return 0
        random.shuffle(subscription_ids)  # a busy subscription cannot always go first
        if self.http_session is None:
            self.http_session = guarded_session(self.allow_hosts)
            mask_library_logs()
        return run_within(self.policy.pass_budget_seconds, subscription_ids,
                          lambda subscription_id: self.run_subscription(subscription_id, now))

    def run_subscription(self, subscription_id: int, now: dt.datetime) -> int:
        with self.session_factory() as db:
            subscription = db.get(WebhookSubscription, subscription_id)
            if subscription is None or not subscription.enabled:
                return 0
            try:
                secret = self.box.open({"secret": subscription.secret})["secret"]
            except ValueError as exc:
                log.error("webhook subscription %s: secret unreadable: %s", subscription_id, exc)
                return 0
            url, publisher = subscription.url, subscription.publisher
        done, started = 0, time.monotonic()
        while time.monotonic() - started < self.policy.pass_budget_seconds:
            # Again while it goes well: a call's next event becomes due as its last is sent.
            token, ids = self.claim(subscription_id, self.policy.batch, now)
            if not ids:
                break
            tried, healthy = self._send_batch(ids, token, url, secret, publisher, now)
            done += tried
            if not healthy:
                break
        return done

    def _send_batch(self, ids: list[int], token: str, url: str, secret: str,
                    publisher: str | None, now: dt.datetime) -> tuple[int, bool]:
        """Send claimed rows in order; (rows tried, whether to go on)."""
        claimed_at = time.monotonic()
        for position, delivery_id in enumerate(ids):
            if time.monotonic() - claimed_at + self.policy.timeout > self.policy.lease_seconds:
                # The lease could run out during the next send; another worker would then
                # take the row over while this one still sends it.
                self._release(ids[position:], token, now)
                return position, False
            outcome = self._send_one(delivery_id, token, url, secret, publisher, now)
            if outcome is not None and outcome.status != "sent":
                # The receiver is in trouble: the rest of the batch waits with this row.
                self._release(ids[position + 1:], token, outcome.next_at or now)
                return position + 1, False
        return len(ids), True

    # -- claiming ---------------------------------------------------------------------------

    def _due(self, now: dt.datetime):
        D, E = WebhookDelivery, aliased(WebhookDelivery)
        earlier_open = exists().where(E.subscription_id == D.subscription_id,
                                      E.ordering_key == D.ordering_key, E.id < D.id,
                                      E.status.in_(OPEN))
        return and_(or_(and_(D.status.in_(DUE), D.next_attempt_at <= now),
                        and_(D.status == "sending", D.lease_until < now)),  # its worker died
                    ~earlier_open)

    def claim(self, subscription_id: int, limit: int, now: dt.datetime
              ) -> tuple[str, list[int]]:
        """Take up to ``limit`` due rows of one subscription for this worker, oldest first."""
        D = WebhookDelivery
        token = secrets.token_hex(16)
        due = and_(D.subscription_id == subscription_id, self._due(now))
        claim = dict(status="sending", claim_token=token, attempts=D.attempts + 1,
                     lease_until=now + dt.timedelta(seconds=self.policy.lease_seconds),
                     updated_at=now)
        with self.session_factory() as db:
            ids = select(D.id).where(due).order_by(D.id).limit(limit)
            if db.get_bind().dialect.name == "postgresql":
                locked = list(db.scalars(ids.with_for_update(skip_locked=True, of=D)))
                if locked:
                    db.execute(update(D).where(D.id.in_(locked)).values(**claim)
                               .execution_options(synchronize_session=False))
            else:  # SQLite: one UPDATE runs under the database's write lock
                db.execute(update(D).where(D.id.in_(ids.scalar_subquery()), due).values(**claim)
                           .execution_options(synchronize_session=False))
            db.commit()
            claimed = list(db.scalars(select(D.id).where(D.claim_token == token)
                                      .order_by(D.id)))
        return token, claimed

    def _release(self, ids: Iterable[int], token: str, until: dt.datetime) -> None:
        """Give back claimed rows not tried, their attempt uncounted, to wait ``until``."""
        ids = list(ids)
        if not ids:
            return
        D = WebhookDelivery
        with self.session_factory() as db:
            db.execute(update(D).where(D.id.in_(ids), D.claim_token == token).values(
                status="retry", attempts=D.attempts - 1, claim_token=None, lease_until=None,
                next_attempt_at=until)
                .execution_options(synchronize_session=False))
            db.commit()

    # -- sending ----------------------------------------------------------------------------

    def _send_one(self, delivery_id: int, token: str, url: str, secret: str,
                  publisher: str | None, now: dt.datetime) -> Outcome | None:
        with self.session_factory() as db:
            row = db.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                                          WebhookDelivery.claim_token == token))
            if row is None:
                return None  # taken over after our lease ran out
            if row.body is None:  # frozen now: every retry sends the same bytes
                try:
                    row.body = encode(self.payload(db, row, publisher))
                except Exception:  # a bug in a view: keep the row, try again later
                    log.exception("webhook delivery %s: payload not built", row.id)
                    outcome = Outcome("retry", "the payload could not be built")
                    self._apply(db, row, outcome, NOT_SENT, now)
                    db.commit()
                    return outcome
            body = row.body.encode()
            timestamp = int(self.clock())
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       signing.HEADER: signing.header_value(secret, body, timestamp),
                       "DNI-Event-Id": row.event_id}
            outcome, record = self.post(url, body, headers)
            self._apply(db, row, outcome, record, now)
            db.commit()
        return outcome

    def payload(self, db: Session, row: WebhookDelivery, publisher: str | None) -> dict:
        """The event as sent: ``{"id", "type", "created_at", "data"}``."""
        if row.call_id is not None:
            render = self.render_call or basic_call_view
            data = render(db, row.call_id, publisher) or {"id": row.call_id}
        else:
            data = row.data or {}
        created = row.created_at.astimezone(dt.UTC).isoformat(timespec="milliseconds")
        return {"id": row.event_id, "type": row.event_type, "created_at": created, "data": data}

    def post(self, url: str, body: bytes, headers: dict) -> tuple[Outcome, dict]:
        """One POST through the guarded session; the outcome and the log record."""
        record = {"request": {"method": "POST", "url": masked_url(url), "headers": headers,
                              "body": _clip(body.decode("utf-8", "replace"))},
                  "response": {}, "status": None, "elapsed_ms": None}
        started = time.perf_counter()
        try:
            # No redirects: one would take the signed event somewhere not subscribed.
            response = self.http_session.post(url, data=body, headers=headers,
                                              timeout=self.policy.timeout, allow_redirects=False)
        except ForbiddenAddress as exc:
            record["elapsed_ms"] = _ms(started)
            record["response"] = {"error": f"ForbiddenAddress: {exc}"[:500]}
            return Outcome("failed", f"refused: {exc}"), record
        except requests.RequestException as exc:
            record["elapsed_ms"] = _ms(started)
            record["response"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            return Outcome("retry", f"network error: {type(exc).__name__}"), record
        record["elapsed_ms"] = _ms(started)
        record["status"] = response.status_code
        record["response"] = {"status": response.status_code,
                              "body": _clip(response.content.decode("utf-8", "replace"))}
        if 200 <= response.status_code < 300:
            return Outcome("sent"), record
        detail = f"HTTP {response.status_code}"
        if 300 <= response.status_code < 400:
            detail += " (redirects are not followed)"
        return Outcome("retry", detail, retry_after(response.headers)), record

    def _apply(self, db: Session, row: WebhookDelivery, outcome: Outcome, record: dict,
               now: dt.datetime) -> None:
        """Record the attempt, move the row on, and keep the subscription's failure run."""
        db.add(WebhookAttempt(delivery_id=row.id, outcome=outcome.status,
                              detail=outcome.detail or None, request=record["request"],
                              response=record["response"], http_status=record["status"],
                              elapsed_ms=record["elapsed_ms"], at=now))
        row.claim_token, row.lease_until = None, None
        S = WebhookSubscription
        if outcome.status == "sent":
            row.status, row.sent_at, row.last_error = "sent", now, None
            db.execute(update(S).where(S.id == row.subscription_id, S.failures_in_a_row != 0)
                       .values(failures_in_a_row=0, failing_since=None))
            return
        row.last_error = outcome.detail
        if outcome.status == "retry" and row.attempts < self.policy.max_attempts:
            row.status = "retry"
            row.next_attempt_at = now + dt.timedelta(
                seconds=backoff(row.attempts, self.policy, outcome.retry_after))
            outcome.next_at = row.next_attempt_at
        else:
            row.status = "failed"
            if outcome.status == "retry":
                row.last_error = f"gave up after {row.attempts} attempts: {outcome.detail}"
        db.execute(update(S).where(S.id == row.subscription_id)
                   .values(failures_in_a_row=S.failures_in_a_row + 1))
        db.execute(update(S).where(S.id == row.subscription_id, S.failing_since.is_(None))
                   .values(failing_since=now))
        failures, since = db.execute(select(S.failures_in_a_row, S.failing_since)
                                     .where(S.id == row.subscription_id)).one()
        if (failures >= self.policy.disable_after
                and (now - since).total_seconds() >= self.policy.disable_after_seconds):
            db.execute(update(S).where(S.id == row.subscription_id, S.enabled).values(
                enabled=False, disabled_reason=(
                    f"disabled after {failures} failed deliveries in a row; the last: "
                    f"{outcome.detail}")[:1000]))
            recount(db, db.scalar(select(S.site_id).where(S.id == row.subscription_id)))


def _ms(started: float) -> int:
    return int(round((time.perf_counter() - started) * 1000))


def _clip(text: str) -> str:
    return text if len(text) <= CLIP else text[:CLIP] + "…"
