"""The worker's half of the outbox: claim due rows, send them in batches, record the answers.

Safe with any number of workers:

- **Claiming** is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` that
  stamps the rows with a fresh claim token, status ``sending`` and a lease time (SQLite has
  no row locks, but a single UPDATE runs under its database write lock, so it is atomic
  there too). Only the holder of the token may record the outcome.
- **Sent once**: a ``sent`` row is never claimed again. If a worker dies after the HTTP call
  but before its commit, the row stays ``sending`` until its lease runs out and is then sent
  again *with the same key* (``Conversion.key``: Google's ``transactionId``, Meta's
  ``event_id``, Microsoft's click id and time), so the platform drops the repeat. GA4's
  Measurement Protocol has no dedupe key: a crash in that window may count twice there.
- **Rate limits** are a per-destination, per-minute counter in Redis shared by all workers;
  each request takes one unit, and a destination out of units waits for the next minute.
- **Back-off**: a transient failure is retried after ``base * 2**(attempt-1)`` seconds (capped,
  with jitter, and never sooner than the platform's ``Retry-After``); after ``max_attempts``
  the row is ``failed`` (an admin may queue it again).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from attribution.conversions.admin import apply_file
from attribution.conversions.base import Outcome
from attribution.conversions.credentials import CredentialBox, MissingKey, reseal
from attribution.conversions.models import (
    DUE,
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
)
from attribution.conversions.outbox import conversion_for
from attribution.models import Call
from pools.keys import conversion_rate_key
from pools.models import utcnow

log = logging.getLogger(__name__)
CLIP = 16_000  # characters of a request or response body kept in the attempts log


SECRET_QUERY = re.compile(r"((?:access_token|api_secret|token|key|secret)=)[^&\s\"']+",
                          re.IGNORECASE)


class QuerySecretsFilter(logging.Filter):
    """Masks credentials in URLs that HTTP libraries log at DEBUG (Meta's and GA4's
    endpoints take them in the query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(SECRET_QUERY.sub(r"\1****", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = SECRET_QUERY.sub(r"\1****", record.msg)
        return True


def mask_library_logs() -> None:
    """Install the filter on urllib3's request logger once per process."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, QuerySecretsFilter) for f in logger.filters):
        logger.addFilter(QuerySecretsFilter())


@dataclass(frozen=True)
class Policy:
    """How hard to try. ``settle_seconds``: how long a new conversion waits for late
    call events (a final duration, a quick disposition) before it is first sent."""

    max_attempts: int = 8
    base_delay: float = 30.0
    max_delay: float = 6 * 3600.0
    lease_seconds: float = 300.0
    settle_seconds: float = 60.0
    batches_per_pass: int = 10  # per destination, so one busy destination cannot starve others
    pass_budget_seconds: float = 2.0  # no new batch after this long: the worker has pools too


def backoff(attempt: int, policy: Policy, retry_after: float | None = None,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempt + 1``: exponential, jittered, at least Retry-After."""
    delay = min(policy.max_delay, policy.base_delay * 2 ** max(0, attempt - 1))
    delay = delay / 2 + rng() * delay / 2  # "equal jitter": spread retries, keep the trend
    return max(delay, retry_after or 0.0)


def run_within(budget_seconds: float, ids: Iterable[int], run: Callable[[int], int]) -> int:
    """``run(id)`` for each id in turn until ``budget_seconds`` have passed; the sum of what
    they return. The worker has other work: an id not reached waits for the next pass."""
    done, started = 0, time.monotonic()
    for item_id in ids:
        if time.monotonic() - started > budget_seconds:
            break
        done += run(item_id)
    return done


class RateLimiter:
    """A fixed one-minute window per destination, counted in Redis (shared by workers)."""

    def __init__(self, redis, prefix: str = "dni"):
        self.redis = redis
        self.prefix = prefix

    def take(self, destination_id: int, per_minute: int | None, now: dt.datetime) -> bool:
        if not per_minute:
            return True
        minute = int(now.timestamp() // 60)
        key = conversion_rate_key(destination_id, minute, self.prefix)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 120)
        used = pipe.execute()[0]
        return used <= per_minute

    def give_back(self, destination_id: int, per_minute: int | None, now: dt.datetime) -> None:
        """Return a unit taken for a request that was not made."""
        if per_minute:
            minute = int(now.timestamp() // 60)
            self.redis.decr(conversion_rate_key(destination_id, minute, self.prefix))


@dataclass
class Deliverer:
    """Runs passes over the outbox; one per worker, reused so OAuth tokens are cached."""

    session_factory: sessionmaker
    limiter: RateLimiter
    policy: Policy = field(default_factory=Policy)
    build: Callable | None = None  # kind, config -> destination (default: the registry)
    deliver: Callable | None = None  # destination, convs, now, session, timeout (default: http)
    http_session: object | None = None
    timeout: float | None = None  # default: the destination's own
    configured: dict | None = None  # destinations and rules from DNI_CONVERSIONS_CONFIG
    observe: Callable | None = None  # (destination kind, outcome status), e.g. for metrics
    allow_hosts: tuple[str, ...] = ()  # may resolve to internal addresses (test receivers)
    credentials_keys: tuple[str, ...] = ()  # DNI_CREDENTIALS_KEYS: open the stored configs
    _built: dict = field(default_factory=dict)
    _resealed: bool = False

    @classmethod
    def from_settings(cls, session_factory: sessionmaker, redis, settings,
                      observe: Callable | None = None) -> Deliverer:
        """The worker's deliverer, tuned by the service's settings."""
        policy = Policy(max_attempts=settings.conversions_max_attempts,
                        base_delay=settings.conversions_retry_seconds,
                        settle_seconds=settings.conversions_settle_seconds,
                        lease_seconds=settings.conversions_lease_seconds)
        return cls(session_factory, RateLimiter(redis, settings.redis_prefix), policy,
                   configured=settings.conversions_config, observe=observe,
                   allow_hosts=settings.outbound_allow_hosts,
                   credentials_keys=settings.credentials_keys)

    @cached_property
    def box(self) -> CredentialBox:
        return CredentialBox(self.credentials_keys)

    def _ready(self) -> None:
        """Resolve the defaults on first use, so building a worker never imports them."""
        if self.build is None:
            from attribution.conversions.registry import build_destination

            self.build = build_destination
        if self.deliver is None:
            from attribution.conversions.http import deliver

            self.deliver = deliver
        if self.http_session is None:
            from attribution.conversions.outbound import guarded_session

            self.http_session = guarded_session(self.allow_hosts)
        mask_library_logs()

    # -- one pass ---------------------------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Send what is due now; returns how many rows were settled."""
        now = now or utcnow()
        with self.session_factory() as db:
            if self.configured is not None:
                try:
                    apply_file(db, self.configured, self.box)
                    db.commit()
                except MissingKey as exc:
                    db.rollback()
                    log.error("DNI_CONVERSIONS_CONFIG not applied: %s", exc)
                self.configured = None  # once per worker: the file is read at start
            if not self._resealed:
                # Once per worker: encrypt credentials stored in plain text by older
                # versions, and re-encrypt with the first key after a rotation.
                if reseal(db, self.box):
                    db.commit()
                self._resealed = True
            destination_ids = list(db.scalars(
                select(ConversionDelivery.destination_id).where(self._due(now)).distinct()))
        if destination_ids:
            self._ready()
        return run_within(self.policy.pass_budget_seconds, destination_ids,
                          lambda destination_id: self._run_destination(destination_id, now))

    def _run_destination(self, destination_id: int, now: dt.datetime) -> int:
        with self.session_factory() as db:
            row = db.get(ConversionDestination, destination_id)
            if row is None or not row.enabled:
                return 0
            try:
                destination = self._destination(row)
            except ValueError as exc:
                log.error("conversion destination %s is misconfigured: %s", destination_id, exc)
                return 0
        done = 0
        for _ in range(self.policy.batches_per_pass):
            if not self.limiter.take(destination_id, destination.per_minute, now):
                log.info("conversion destination %s: rate limit reached", destination_id)
                break
            token, claimed = self.claim(destination_id, destination.max_batch, now)
            if not claimed:
                self.limiter.give_back(destination_id, destination.per_minute, now)
                break
            done += self._send(destination, token, claimed, now)
            if len(claimed) < destination.max_batch:
                break  # nothing more is due
        return done

    def _destination(self, row: ConversionDestination):
        cache_key = (row.id, row.updated_at, row.kind)
        if cache_key not in self._built:
            self._built = {k: v for k, v in self._built.items() if k[0] != row.id}
            self._built[cache_key] = self.build(row.kind, self.box.open(row.config))
        return self._built[cache_key]

    # -- claiming ---------------------------------------------------------------------------

    def _due(self, now: dt.datetime):
        D = ConversionDelivery
        first_send = now - dt.timedelta(seconds=self.policy.settle_seconds)
        return or_(
            and_(D.status.in_(DUE),
                 D.next_attempt_at <= case((D.attempts == 0, first_send), else_=now)),
            and_(D.status == "sending", D.lease_until < now),  # its worker died
        )

    def claim(self, destination_id: int, limit: int, now: dt.datetime
              ) -> tuple[str, list[int]]:
        """Take up to ``limit`` due rows of one destination for this worker."""
        D = ConversionDelivery
        token = secrets.token_hex(16)
        due = and_(D.destination_id == destination_id, self._due(now))
        claim = dict(status="sending", claim_token=token, attempts=D.attempts + 1,
                     lease_until=now + dt.timedelta(seconds=self.policy.lease_seconds),
                     updated_at=now)
        with self.session_factory() as db:
            ids = select(D.id).where(due).order_by(D.next_attempt_at, D.id).limit(limit)
            if db.get_bind().dialect.name == "postgresql":
                # Lock first, then update exactly those rows: inside "id IN (subquery)" the
                # planner may run the LIMITed subquery again and take more than ``limit``.
                locked = list(db.scalars(ids.with_for_update(skip_locked=True)))
                if locked:
                    db.execute(update(D).where(D.id.in_(locked)).values(**claim)
                               .execution_options(synchronize_session=False))
            else:
                # SQLite: one UPDATE runs under the database's write lock, so it is atomic.
                db.execute(update(D).where(D.id.in_(ids.scalar_subquery()), due).values(**claim)
                           .execution_options(synchronize_session=False))
            db.commit()
            claimed = list(db.scalars(select(D.id).where(D.claim_token == token)))
        return token, claimed

    # -- sending ----------------------------------------------------------------------------

    def _send(self, destination, token: str, ids: list[int], now: dt.datetime) -> int:
        with self.session_factory() as db:
            rows = db.scalars(select(ConversionDelivery).where(
                ConversionDelivery.id.in_(ids), ConversionDelivery.claim_token == token)).all()
            outcomes: dict[int, Outcome] = {}
            to_send, by_key = [], {}
            for row in rows:
                if row.operation == "retraction" and not destination.supports_retraction:
                    outcomes[row.id] = Outcome(row.key, "unsupported",
                                               "this platform takes no retractions")
                    continue
                conv = conversion_for(db, row, db.get(Call, row.call_id))
                reason = destination.check(conv, now)
                if reason is not None:
                    outcomes[row.id] = Outcome(row.key, getattr(reason, "status", "failed"),
                                               str(reason))
                    continue
                to_send.append(conv)
                by_key[conv.key] = row
            record: dict = {}
            if to_send:
                timeout = self.timeout or getattr(destination, "timeout", 20.0)
                try:
                    answers, record = self.deliver(destination, to_send, now,
                                                   self.http_session, timeout)
                except Exception as exc:  # a bug or an unexpected network failure: retry
                    log.exception("conversion delivery to %s failed", destination.kind)
                    answers = [Outcome(c.key, "retry", f"{type(exc).__name__}")
                               for c in to_send]
                answered = {a.key: a for a in answers}
                for key, row in by_key.items():
                    outcomes[row.id] = answered.get(key) or Outcome(
                        key, "retry", "the platform's answer did not mention this conversion")
            for row in rows:
                self._apply(db, row, outcomes[row.id], record if row.key in by_key else {}, now)
            db.commit()
        if self.observe is not None:
            for outcome in outcomes.values():
                self.observe(destination.kind, outcome.status)
        return len(rows)

    def _apply(self, db: Session, row: ConversionDelivery, outcome: Outcome, record: dict,
               now: dt.datetime) -> None:
        """Record one row's outcome and move it to its next state."""
        operation = row.operation
        db.add(ConversionAttempt(
            delivery_id=row.id, operation=operation, outcome=outcome.status,
            detail=(outcome.detail or "")[:2000] or None, at=now,
            request=_clipped({"method": record.get("method"), "url": record.get("url"),
                              "body": record.get("request_body"),
                              "requests": len(record.get("requests") or [])}),
            response=_clipped({"status": record.get("status"),
                               "body": record.get("response_body"),
                               "error": record.get("error")}),
            http_status=_int(record.get("status")), elapsed_ms=_int(record.get("elapsed_ms"))))
        row.claim_token, row.lease_until = None, None
        row.last_error = None if outcome.status == "sent" else (outcome.detail or None)
        if outcome.status == "sent":
            if operation == "retraction":
                row.status, row.retracted_at = "retracted", now
            else:
                row.sent_at = now
                row.status = "sent"
                if not row.wanted:  # disqualified while it was on its way
                    row.status, row.operation, row.attempts = "retraction_pending", \
                        "retraction", 0
                    row.next_attempt_at = now
        elif outcome.status == "retry" and row.attempts < self.policy.max_attempts:
            row.status = "retry"
            row.next_attempt_at = now + dt.timedelta(
                seconds=backoff(row.attempts, self.policy, outcome.retry_after))
        elif outcome.status == "skipped":
            row.status = "retraction_unsupported" if operation == "retraction" else "skipped"
        elif outcome.status == "unsupported":
            row.status = "retraction_unsupported"
        else:  # failed, or out of attempts
            row.status = "failed"
            if outcome.status == "retry":
                row.last_error = f"gave up after {row.attempts} attempts: {outcome.detail}"


def _int(value) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _clipped(part: dict) -> dict:
    """A request or response for the log, with long bodies cut (secrets are already masked)."""
    out = {}
    for name, value in part.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and len(value) > CLIP:
            value = value[:CLIP] + "…"
        out[name] = value
    return out
