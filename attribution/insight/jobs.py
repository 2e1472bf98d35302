"""The worker's step for call recordings: claim, fetch, keep, analyse, and let them go.

Safe with any number of workers, as the conversions outbox is:

- **Claiming** is one ``UPDATE`` of due calls (``FOR UPDATE SKIP LOCKED`` first on
  PostgreSQL; on SQLite one UPDATE runs under the database's write lock) that stamps them
  ``fetching`` with a fresh claim token, one more attempt and a lease in
  ``recording_next_try_at``. A worker that dies leaves the call to be claimed again when
  the lease runs out. Only the holder of the token may record the outcome.
- **Off the request path, off the call's other processing**: the fetch and the analysis
  run with no transaction open; the outcome is a short update of the recording columns
  (and of the disposition, when a keyword names one and nobody has set one), and the call
  is qualified again in it (``apply_insight``): rules on talk time and keywords that
  waited for the analysis (``insight_pending``) are decided then.
- **Failures** are kept in ``recording_error`` and retried after ``fetch.backoff``; an
  error that trying again cannot fix, or the last attempt, leaves the call ``failed``.
- **Retention**: a site's ``recording_retention_days`` deletes its recordings that old.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from attribution.conversions.outbound import ForbiddenAddress, guarded_session
from attribution.insight import analyse
from attribution.insight.fetch import Credentials, FetchError, backoff, fetch_recording
from attribution.insight.storage import FolderStore, RecordingStore
from attribution.insight.transcriber import load_transcriber
from attribution.models import RECORDING_CARRIERS as CARRIERS
from attribution.models import Call
from pools.models import Site, utcnow

log = logging.getLogger(__name__)

LEASE_SECONDS = 900.0  # a fetch (5 min at most) and an hour-long call's analysis
RETENTION_EVERY = 600.0  # seconds between retention sweeps of one worker
ERROR_CHARS = 2000


def recording_store(settings, instance_path: str) -> FolderStore:
    """The recordings folder: DNI_RECORDINGS_DIR, else ``<instance>/recordings``."""
    return FolderStore(settings.recordings_dir or os.path.join(instance_path, "recordings"))


def recording_key(call: Call) -> str:
    """Where a call's recording is kept: by site, then by our own call id (carriers' ids
    are not ours to trust as file names)."""
    return f"site-{call.site_id or 0}/call-{call.id}.wav"


def twilio_account_of(url: str) -> str | None:
    """The account SID in a Twilio recording link (``/Accounts/AC.../Recordings/...``)."""
    parts = url.split("/")
    if "Accounts" in parts:
        index = parts.index("Accounts") + 1
        if index < len(parts) and parts[index].startswith("AC"):
            return parts[index]
    return None


@dataclass
class InsightJobs:
    """Passes over calls with a recording to fetch; one per worker (the engine is loaded
    once per process)."""

    session_factory: sessionmaker
    store: RecordingStore
    credentials: Credentials = field(default_factory=Credentials)
    max_attempts: int = 8
    retry_seconds: float = 60.0
    batch: int = 5
    transcriber_spec: str | None = None
    transcriber_model_dir: str | None = None
    http_session: object | None = None  # default: public addresses only, save allow_hosts
    allow_hosts: tuple[str, ...] = ()
    _swept_at: float = -RETENTION_EVERY

    @classmethod
    def from_settings(cls, session_factory: sessionmaker, settings, instance_path: str
                      ) -> InsightJobs:
        credentials = Credentials(twilio_account_sid=settings.twilio_account_sid,
                                  twilio_auth_token=settings.twilio_auth_token,
                                  telnyx_api_key=settings.telnyx_api_key)
        return cls(session_factory, recording_store(settings, instance_path), credentials,
                   max_attempts=settings.insight_max_attempts,
                   retry_seconds=float(settings.insight_retry_seconds),
                   transcriber_spec=settings.transcriber,
                   transcriber_model_dir=settings.transcriber_model_dir,
                   allow_hosts=settings.outbound_allow_hosts)

    # -- one pass ---------------------------------------------------------------------------

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Fetch and analyse the recordings due now; returns how many calls were settled."""
        now = now or utcnow()
        if time.monotonic() - self._swept_at >= RETENTION_EVERY:
            self._swept_at = time.monotonic()
            with self.session_factory() as db:
                apply_retention(db, self.store, now)
                db.commit()
        token, ids = self.claim(self.batch, now)
        for call_id in ids:
            self.process(call_id, token, now)
        return len(ids)

    def _due(self, now: dt.datetime):
        return and_(Call.recording_url.is_not(None), Call.provider.in_(CARRIERS), or_(
            and_(Call.recording_status == "pending",
                 or_(Call.recording_next_try_at.is_(None), Call.recording_next_try_at <= now)),
            and_(Call.recording_status == "fetching", Call.recording_next_try_at < now),  # died
        ))

    def claim(self, limit: int, now: dt.datetime) -> tuple[str, list[int]]:
        """Take up to ``limit`` due calls for this worker."""
        token = secrets.token_hex(16)
        due = self._due(now)
        claim = dict(recording_status="fetching", recording_claim=token,
                     recording_attempts=Call.recording_attempts + 1,
                     recording_next_try_at=now + dt.timedelta(seconds=LEASE_SECONDS))
        with self.session_factory() as db:
            ids = select(Call.id).where(due).order_by(Call.recording_next_try_at, Call.id) \
                .limit(limit)
            if db.get_bind().dialect.name == "postgresql":
                locked = list(db.scalars(ids.with_for_update(skip_locked=True)))
                if locked:
                    db.execute(update(Call).where(Call.id.in_(locked)).values(**claim)
                               .execution_options(synchronize_session=False))
            else:
                db.execute(update(Call).where(Call.id.in_(ids.scalar_subquery()), due)
                           .values(**claim).execution_options(synchronize_session=False))
            db.commit()
            claimed = list(db.scalars(select(Call.id).where(Call.recording_claim == token)))
        return token, claimed

    # -- recordings kept but never analysed ---------------------------------------------------

    def backfill_candidates(self, *, site_id: int | None = None, reanalyse: bool = False,
                            after_id: int = 0, limit: int = 100) -> list[int]:
        """Calls with a kept recording and no analysis (every kept one with ``reanalyse``,
        after a keyword list changed, say), by id from ``after_id``; none being fetched."""
        where = [Call.recording_path.is_not(None), Call.id > after_id,
                 or_(Call.recording_status.is_(None), Call.recording_status != "fetching")]
        if not reanalyse:
            where.append(Call.insight["status"].as_string().is_(None))  # SQL or JSON null
        if site_id is not None:
            where.append(Call.site_id == site_id)
        with self.session_factory() as db:
            return list(db.scalars(select(Call.id).where(*where).order_by(Call.id).limit(limit)))

    def backfill_one(self, call_id: int, now: dt.datetime | None = None) -> str | None:
        """Analyse one call's kept recording as the worker would (claimed the same way, so a
        worker never takes it meanwhile); returns its recording status after, None if it was
        taken by someone else first."""
        now = now or utcnow()
        token = secrets.token_hex(16)
        with self.session_factory() as db:
            taken = db.execute(update(Call).where(
                Call.id == call_id, Call.recording_path.is_not(None),
                or_(Call.recording_status.is_(None), Call.recording_status != "fetching"))
                .values(recording_status="fetching", recording_claim=token,
                        recording_next_try_at=now + dt.timedelta(seconds=LEASE_SECONDS))
                .execution_options(synchronize_session=False)).rowcount
            db.commit()
        if not taken:
            return None
        self.process(call_id, token, now)
        with self.session_factory() as db:
            return db.scalar(select(Call.recording_status).where(Call.id == call_id))

    # -- one call ---------------------------------------------------------------------------

    def process(self, call_id: int, token: str, now: dt.datetime) -> None:
        """Fetch (unless already kept), analyse, record; any failure is kept and retried."""
        with self.session_factory() as db:
            call = db.scalar(select(Call).where(Call.id == call_id, Call.recording_claim == token))
            if call is None:
                return
            site = db.get(Site, call.site_id) if call.site_id else None
            keywords = list(site.insight_keywords or []) if site is not None else []
            url, provider, key = call.recording_url, call.provider, call.recording_path
            wanted_key = recording_key(call)
        # No transaction is open from here to the outcome: the carrier and the engine may
        # take minutes, and the call's other events must not wait for them.
        try:
            wav = None
            if key is not None:
                try:
                    wav = self.store.get(key)
                except KeyError:
                    key = None  # deleted under us: fetch again
            if wav is None:
                wav = fetch_recording(url, provider, self._credentials(url),
                                      session=self._http())
                key = wanted_key
                self.store.put(key, wav)
                self._kept(call_id, token, key, now)
            insight = analyse(wav, keywords, transcriber=load_transcriber(
                self.transcriber_spec, self.transcriber_model_dir), now=now)
        except FetchError as exc:
            self._failed(call_id, token, str(exc), exc.retry, now)
            return
        except ForbiddenAddress as exc:  # the link leads inside: trying again cannot help
            self._failed(call_id, token, str(exc), False, now)
            return
        except Exception as exc:  # a refused address, a full disk, a bug: kept and retried
            log.exception("recording of call %s: insight failed", call_id)
            self._failed(call_id, token, f"{type(exc).__name__}: {exc}", True, now)
            return
        self._done(call_id, token, key, insight, now)

    def _credentials(self, url: str) -> Credentials:
        if self.credentials.twilio_account_sid or not self.credentials.twilio_auth_token:
            return self.credentials
        return Credentials(twilio_account_sid=twilio_account_of(url),
                           twilio_auth_token=self.credentials.twilio_auth_token,
                           telnyx_api_key=self.credentials.telnyx_api_key)

    def _http(self):
        if self.http_session is None:
            self.http_session = guarded_session(self.allow_hosts)
        return self.http_session

    def _held(self, db: Session, call_id: int, token: str) -> Call | None:
        return db.scalar(select(Call).where(Call.id == call_id, Call.recording_claim == token))

    def _kept(self, call_id: int, token: str, key: str, now: dt.datetime) -> None:
        """The copy is kept: say so at once, so a failed analysis never fetches it again."""
        with self.session_factory() as db:
            call = self._held(db, call_id, token)
            if call is None:
                self._orphan(db, call_id, key)
                return
            call.recording_path, call.recording_fetched_at = key, now
            db.commit()

    def _orphan(self, db: Session, call_id: int, key: str) -> None:
        """Our claim was lost. If the recording was deleted meanwhile, so is our copy."""
        call = db.get(Call, call_id)
        if call is None or call.recording_status == "deleted" or call.recording_path != key:
            self.store.delete(key)

    def _failed(self, call_id: int, token: str, error: str, retry: bool,
                now: dt.datetime) -> None:
        with self.session_factory() as db:
            call = self._held(db, call_id, token)
            if call is None:
                return
            call.recording_claim = None
            if retry and call.recording_attempts < self.max_attempts:
                call.recording_status = "pending"
                call.recording_next_try_at = now + dt.timedelta(
                    seconds=backoff(call.recording_attempts, base=self.retry_seconds))
                call.recording_error = error[:ERROR_CHARS]
            else:
                call.recording_status, call.recording_next_try_at = "failed", None
                call.recording_error = (error if not retry else
                                        f"gave up after {call.recording_attempts} attempts: "
                                        f"{error}")[:ERROR_CHARS]
                if call.insight is None:  # rules waiting for insight are decided: none comes
                    _requalify(db, call)
            db.commit()

    def _done(self, call_id: int, token: str, key: str, insight: dict,
              now: dt.datetime) -> None:
        with self.session_factory() as db:
            call = self._held(db, call_id, token)
            if call is None:
                self._orphan(db, call_id, key)
                return
            call.recording_status, call.recording_claim = "fetched", None
            call.recording_next_try_at, call.recording_error = None, None
            call.recording_path = key
            apply_insight(db, call, insight)
            db.commit()


def apply_insight(db: Session, call: Call, insight: dict) -> None:
    """Write the analysis on the call and qualify it again, as a disposition does
    (``attribution.calls.requalify``: revenue, payout and the conversion outbox in the same
    transaction), so rules on talk time and keywords are decided now. A keyword that names
    a disposition sets it, unless one is set already (by a person, or by an earlier
    analysis); ``disposition_applied`` says whether it did."""
    applied = bool(insight.get("disposition")) and call.disposition is None
    if applied:
        call.disposition = insight["disposition"]
    call.insight = {**insight, "disposition_applied": applied}
    _requalify(db, call)


def _requalify(db: Session, call: Call) -> None:
    from attribution.calls import requalify  # calls imports much; only needed here

    requalify(db, call)


# -- retention and deletion --------------------------------------------------------------


def delete_recording(db: Session, store: RecordingStore, call: Call) -> bool:
    """Delete a call's kept recording (on request, or by retention); the insight stays.
    Returns whether there was one. A worker fetching it now drops its copy (``_orphan``)."""
    had = call.recording_path is not None
    if had:
        store.delete(call.recording_path)
    call.recording_path, call.recording_claim = None, None
    if call.recording_status is not None:
        call.recording_status, call.recording_next_try_at = "deleted", None
        if call.insight is None:  # deleted before analysis: rules waiting for it are decided
            _requalify(db, call)
    return had


def apply_retention(db: Session, store: RecordingStore, now: dt.datetime, limit: int = 500) -> int:
    """Delete recordings older than their site's ``recording_retention_days``; returns how
    many. Safe in several workers at once: deleting twice is deleting once."""
    sites = db.execute(select(Site.id, Site.recording_retention_days)
                       .where(Site.recording_retention_days.is_not(None))).all()
    deleted = 0
    for site_id, days in sites:
        cutoff = now - dt.timedelta(days=days)
        calls = db.scalars(select(Call).where(
            Call.site_id == site_id, Call.recording_path.is_not(None),
            Call.recording_fetched_at < cutoff).limit(limit)).all()
        for call in calls:
            deleted += delete_recording(db, store, call)
    return deleted
