"""The review of calls held for fraud: approve (the call qualifies again by its rules) or
reject (disqualified: no payout, and conversions already sent are retracted where the
platform allows, as a disqualifying disposition does)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.calls import requalify
from attribution.models import Call
from pools.models import utcnow

DECISIONS = {"approve": "approved", "reject": "rejected"}


class ReviewError(ValueError):
    """The call cannot be reviewed so (the message says why)."""


def review(db: Session, call: Call, decision: str, reason: str | None, by: str) -> Call:
    if call.review_state is None:
        raise ReviewError("this call was not held for review")
    call.review_state = DECISIONS[decision]
    call.review_reason, call.reviewed_by, call.reviewed_at = reason, by, utcnow()
    requalify(db, call)
    return call


def pending(query, limit: int):
    """``query`` on calls limited to those waiting for review, oldest first."""
    return query.where(Call.review_state == "pending").order_by(
        Call.started_at, Call.id).limit(limit)


def pending_calls(db: Session, limit: int) -> list[Call]:
    return list(db.scalars(pending(select(Call), limit)))
