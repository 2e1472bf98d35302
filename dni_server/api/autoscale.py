"""Autoscale on the admin API (issue 19): the policy on the pool, and the decision log.

The policy travels as the pool's ``autoscale`` field (``PATCH /v1/pools/<id>`` merges the
settings sent into the stored ones, ``null`` removes it; ``GET`` shows it). It spends the
operator's money through a carrier account, so publisher tokens neither see nor set it.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from marshmallow import fields

from attribution.numbers import autoscale_policies
from attribution.numbers.autoscale import PolicyError
from dni_server.api.auth import deny_publishers, publisher_scope, token_required
from dni_server.api.schemas import Reply
from dni_server.errors import Forbidden, Invalid
from dni_server.extensions import db
from dni_server.openapi import documented
from dni_server.timefmt import iso_utc

bp = token_required(Blueprint("autoscale", __name__))
UNCHANGED = object()


class AutoscaleDecisionSchema(Reply):
    id = fields.Integer()
    at = fields.Function(lambda row: iso_utc(row.at))
    action = fields.String(metadata={"enum": ["grow", "trim", "hold"]})
    numbers = fields.Integer()
    size = fields.Integer()
    expected = fields.Float(allow_none=True)
    reason = fields.String()
    mode = fields.String(metadata={"enum": ["propose", "apply"]})
    applied = fields.Boolean()
    done = fields.Integer(allow_none=True)
    result = fields.String(allow_none=True)


class AutoscaleDecisionListSchema(Reply):
    decisions = fields.List(fields.Nested(AutoscaleDecisionSchema))


decision_list = AutoscaleDecisionListSchema()


def policy_change(changes: dict, pool=None):
    """Take ``autoscale`` out of a pool's changes, checked (before anything is stored):
    the policy to store, None to remove it, or UNCHANGED."""
    if "autoscale" not in changes:
        return UNCHANGED
    raw = changes.pop("autoscale")
    if publisher_scope() is not None:
        raise Forbidden("a publisher token cannot set autoscale (it buys numbers)")
    if raw is None:
        return None
    current = autoscale_policies.stored(db.session, pool.id) if pool is not None else None
    try:
        return autoscale_policies.check(db.session, raw, current)
    except PolicyError as exc:
        raise Invalid(str(exc), fields={"autoscale": exc.fields}) from None


def save_change(pool, policy) -> None:
    """Store what ``policy_change`` answered, and commit."""
    if policy is UNCHANGED:
        return
    autoscale_policies.save(db.session, pool.id, policy)
    db.session.commit()


def policy_view(pool) -> dict | None:
    """The pool's policy as its answer shows it (None: none, or a publisher asking)."""
    if publisher_scope() is not None:
        return None
    return autoscale_policies.stored(db.session, pool.id)


@bp.get("/v1/pools/<int:pool_id>/autoscale/decisions")
@documented("The pool's autoscale decisions, newest first (query: limit), each with its "
            "reason and, in apply mode, what came of it", decision_list,
            errors=(401, 403, 404, 422))
def list_decisions(pool_id: int):
    from dni_server.api.admin import get_pool, limit_arg  # admin imports this module

    deny_publishers()
    pool = get_pool(pool_id)
    rows = autoscale_policies.decisions(db.session, pool.id, limit_arg())
    return jsonify(decision_list.dump({"decisions": rows}))
