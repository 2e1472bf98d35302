"""Autoscale policies as the API and the dashboard see them: checked, stored, and the log.

A change merges into the stored policy (a PATCH sends only what changes) and is checked by
``Policy.parse``, then here for what needs SQL: the carrier account must exist, and ``apply``
mode needs one to buy from. Every problem is a ``PolicyError`` naming its setting.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.numbers import accounts
from attribution.numbers.accounts import AccountError
from attribution.numbers.autoscale import Policy, PolicyError
from attribution.numbers.autoscale_models import AutoscaleDecision, PoolAutoscale


def stored(db: Session, pool_id: int) -> dict | None:
    """The pool's policy in its JSON form, or None when it has none."""
    row = db.get(PoolAutoscale, pool_id)
    return dict(row.policy) if row is not None else None


def check(db: Session, change: dict, current: dict | None = None) -> dict:
    """The policy ``change`` makes of ``current``, in its JSON form; PolicyError naming
    each bad setting."""
    if not isinstance(change, dict):
        raise PolicyError({"autoscale": "an object of settings, or null to remove it"})
    merged = {**(current or {}), **change}
    try:
        policy = Policy.parse(merged)
    except PolicyError as exc:
        bad = exc.fields
    else:
        bad = {}
    account = merged.get("account")
    if "account" not in bad and account is not None:
        try:
            merged["account"] = accounts.get(db, account).id
        except AccountError:
            bad["account"] = f"unknown carrier account {account!r}"
    if merged.get("mode") == "apply" and account is None:
        bad["account"] = "required in apply mode: the carrier account numbers are bought from"
    if bad:
        raise PolicyError(bad)
    return dataclasses.asdict(dataclasses.replace(policy, account=merged.get("account")))


def save(db: Session, pool_id: int, policy: dict | None) -> None:
    """Store the pool's policy (None removes it); the worker decides again at its next
    round. Flushes; the caller commits."""
    row = db.get(PoolAutoscale, pool_id)
    if policy is None:
        if row is not None:
            db.delete(row)
    elif row is None:
        db.add(PoolAutoscale(pool_id=pool_id, policy=policy, enabled=policy["enabled"]))
    else:
        row.policy, row.enabled, row.next_at = policy, policy["enabled"], None
    db.flush()


def decisions(db: Session, pool_id: int, limit: int = 100) -> list[AutoscaleDecision]:
    """The pool's latest decisions, newest first."""
    return list(db.scalars(select(AutoscaleDecision).where(AutoscaleDecision.pool_id == pool_id)
                           .order_by(AutoscaleDecision.at.desc(), AutoscaleDecision.id.desc())
                           .limit(limit)))
