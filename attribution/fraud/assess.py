"""The call's signals as stored: the pre-ring ones (from ``screen``, carried by the call
event), those the match adds when the call is created, and those its end adds.

Called by ``attribution.calls`` inside ingest: ``on_new_call`` reads only the call and its
match (no query); ``after_call`` runs when the call's talk time is known, with one query
for the callers on the call's lease.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, func, or_, select

from attribution.fraud import signals as sig
from attribution.fraud.policy import DEFAULTS, action_for
from attribution.fraud.score import score
from attribution.webhooks import events as webhook_events

MATCH_SIGNALS = ("scraped_number", "instant_call", "geo_mismatch")
END_SIGNALS = ("threshold_hugging", "shared_lease", "one_sided", "voicemail", "fraud_keyword")
KEPT = ("buyer",)  # facts given by routing, kept when the signals are evaluated again


def _signals(stored: list[dict]) -> list[sig.Signal]:
    return [sig.Signal(s["name"], s.get("value"), bool(s.get("fired"))) for s in stored]


def _store(call, found: list[sig.Signal], policy: dict, action: str | None = None) -> None:
    """Write the signals, the score with its contributions, and the review state: a call
    at or above ``flag`` is held for review once (a decision already made stays)."""
    points, parts = score(found)
    kept = {k: v for k, v in (call.fraud_signals or {}).items() if k in KEPT}
    call.fraud_signals = kept | {
        "signals": [s.as_dict() for s in found], "contributions": parts,
        "policy": {k: v for k, v in policy.items() if k != "challenge_text"}}
    call.risk_score = points
    if action is not None:
        call.fraud_action = action
    if call.review_state is None and action_for(points, policy, pre_ring=False) == "flag":
        call.review_state = "pending"
        call.fraud_flagged_now = True  # announced once the call has its id (``announce``)


ROTATION = 2  # other publishers within ``cross_days``: rotation, not shopping around


def after_insert(db, call) -> None:
    """Once a new call has its id (``attribution.calls``, in the ingest's transaction): a
    rotating caller's earlier calls are held too, and a hold is announced."""
    hold_earlier_calls(db, call)
    announce(db, call)


def hold_earlier_calls(db, call) -> None:
    """A caller who has now reached ``ROTATION`` or more other publishers was rotating
    from the start: the caller's earlier calls to this site within the window (each
    publisher's own) get the same ``cross_publisher`` evidence and, by their own site's
    policy, are held for review, their payout and conversions with them (retracted where
    already sent). Only the count travels: no publisher learns who the others are. One
    query, and only for such a call."""
    cross = next((s for s in (call.fraud_signals or {}).get("signals") or ()
                  if s["name"] == "cross_publisher" and s.get("fired")), None)
    others = ((cross or {}).get("value") or {}).get("other_publishers", 0)
    if others < ROTATION or not call.from_valid or call.site_id is None:
        return
    from attribution.calls import requalify  # attribution.calls calls this module

    model = type(call)
    since = call.started_at - dt.timedelta(days=cross["value"]["days"])
    earlier = db.scalars(select(model).where(
        model.from_number == call.from_number, model.site_id == call.site_id,
        model.id != call.id, model.started_at >= since, model.started_at <= call.started_at,
        model.review_state.is_(None)))
    for other in earlier:
        if not other.fraud_signals:
            continue
        policy = DEFAULTS | (other.fraud_signals.get("policy") or {})
        found = [s for s in _signals(other.fraud_signals.get("signals") or [])
                 if s.name != "cross_publisher"]
        found.append(sig.Signal("cross_publisher", dict(cross["value"], seen_later=True), True))
        _store(other, found, policy)
        if other.review_state == "pending":
            requalify(db, other)
            announce(db, other)


def announce(db, call) -> None:
    """Queue ``fraud.flagged`` for a call just held for review, in the transaction that
    held it (once: a call is held only once). The call must have its id."""
    if not getattr(call, "fraud_flagged_now", False):
        return
    call.fraud_flagged_now = False
    webhook_events.emit(db, "fraud.flagged", site_id=call.site_id, publisher=call.publisher,
                        call_id=call.id)


def on_new_call(call, fraud: dict | None, explanation: dict, at: dt.datetime) -> None:
    """The pre-ring signals plus the match's: a number nobody held, a call within seconds
    of the number being shown, a visit far from the caller's number."""
    fraud = fraud or {}
    policy = DEFAULTS | (fraud.get("policy") or {})
    found = _signals(fraud.get("signals") or [])
    credited = next((lease for lease in (explanation or {}).get("leases") or []
                     if lease.get("session_id") == call.session_id
                     and lease.get("started_at_ms") is not None), None)
    shown_for = (at.timestamp() * 1000 - credited["started_at_ms"]) / 1000 if credited else None
    found += [
        sig.scraped_number(call.pool_id is not None, call.method, call.session_id),
        sig.instant_call(shown_for, policy["instant_seconds"]),
        sig.geo_mismatch(call.country, call.region, call.caller_country, call.caller_region),
    ]
    _store(call, found, policy, fraud.get("action") or "none")


def after_call(db, call, thresholds: list[int]) -> None:
    """Once the talk time is known: ended just past a threshold; three or more callers on
    the credited lease. Evaluated again as later events refine the call."""
    if call.fraud_signals is None or call.duration is None or call.ended_at is None:
        return
    policy = DEFAULTS | (call.fraud_signals.get("policy") or {})
    found = [s for s in _signals(call.fraud_signals.get("signals") or [])
             if s.name not in END_SIGNALS]
    callers = None
    if call.session_id is not None:
        # The tenant is implied: a session belongs to one site's pool.
        callers = db.scalar(select(func.count(func.distinct(type(call).from_number)))
                            .where(type(call).session_id == call.session_id))
    buyer = call.fraud_signals.get("buyer") or {}
    hug = sig.threshold_hugging(call.duration, thresholds, policy["hug_seconds"],
                                buyer=(buyer["talk_seconds"], buyer["min_duration"])
                                if buyer else None)
    if hug.fired and call.repeat_caller:
        before = hugged_before(db, call, thresholds, policy)
        if before:
            hug = sig.Signal(hug.name, hug.value | {"hugged_before": before}, True)
    found += [hug, sig.shared_lease(callers), *sig.from_recording(call.insight)]
    _store(call, found, policy)
    announce(db, call)


def hugged_before(db, call, thresholds: list[int], policy: dict) -> int:
    """How many of the caller's earlier calls (same site and publisher, within
    ``cross_days``) also ended just past one of ``thresholds``. Asked only when this call
    hugged one and the caller called before: one query on a few calls in a hundred."""
    model = type(call)
    bands = [and_(model.duration >= t, model.duration <= t + policy["hug_seconds"])
             for t in thresholds if t > 0]
    if not bands or not call.from_valid or call.started_at is None:
        return 0
    since = call.started_at - dt.timedelta(days=policy["cross_days"])
    publisher = (model.publisher.is_(None) if call.publisher is None
                 else model.publisher == call.publisher)
    return db.scalar(select(func.count()).select_from(model).where(
        model.from_number == call.from_number, model.site_id == call.site_id, publisher,
        model.started_at < call.started_at, model.started_at >= since,
        model.id != call.id, or_(*bands))) or 0


def buyer_talk(db, call, talk_seconds: int, min_duration: int) -> None:
    """A routed call's buyer counted ``talk_seconds`` against its conversion threshold
    (``routing`` says so when the call's routing log is finished): ``threshold_hugging``
    weighs it too, and the call is qualified again (a hold takes its payout away)."""
    from attribution.calls import requalify  # attribution.calls calls this module

    if call.fraud_signals is None:
        return
    buyer = {"talk_seconds": talk_seconds, "min_duration": min_duration}
    if call.fraud_signals.get("buyer") == buyer:
        return
    call.fraud_signals = call.fraud_signals | {"buyer": buyer}
    requalify(db, call)
