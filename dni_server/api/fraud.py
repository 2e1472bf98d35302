"""Fraud: the pre-ring check of carrier webhooks (block, challenge), the caller challenge,
the block list, sites' fraud policies, a call's signals and the review queue
(``attribution.fraud``).

The pre-ring check adds no SQL and one Redis round trip to a new call: the block list and
policies come from a per-process map mirrored in Redis (``attribution.fraud.directory``).
"""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from twilio.twiml.voice_response import Gather, VoiceResponse

from attribution.calls import CallEventIn
from attribution.fraud import lists
from attribution.fraud.directory import FraudDirectory
from attribution.fraud.models import BlockEntry, FraudPolicy
from attribution.fraud.policy import effective, validate_policy
from attribution.fraud.quality import quality_report
from attribution.fraud.reject import telnyx_reject
from attribution.fraud.review import ReviewError, review
from attribution.fraud.screen import Screen, Screening
from attribution.models import Call
from dni_server.api.admin import get_site, limit_arg
from dni_server.api.auth import (
    authenticate,
    deny_publishers,
    principal,
    publisher_scope,
    require_admin,
)
from dni_server.api.body import json_object
from dni_server.api.fraud_schemas import (
    BlockEntryInSchema,
    BlockEntrySchema,
    BlockListSchema,
    FraudStateSchema,
    ImportReportSchema,
    PolicyInSchema,
    PolicySchema,
    QualityReportSchema,
    ReviewInSchema,
)
from dni_server.converters import date_arg, parse_id
from dni_server.errors import ApiError, Invalid, NotFound
from dni_server.extensions import db, services
from dni_server.openapi import documented
from pools.models import utcnow
from routing import flow
from routing.calls import CALL_FACTS

log = logging.getLogger(__name__)
bp = Blueprint("fraud", __name__)
entry_in, entry_out, entry_list = BlockEntryInSchema(), BlockEntrySchema(), BlockListSchema()
review_in, fraud_state = ReviewInSchema(), FraudStateSchema()
policy_in, policy_out = PolicyInSchema(), PolicySchema()
quality_out = QualityReportSchema()
import_out = ImportReportSchema()
CHALLENGE_RETRIES = 1


def screen() -> Screen:
    """This app's pre-ring check (made on first use, like the routing services)."""
    ext = current_app.extensions
    if "fraud" not in ext:
        s = services()
        ext["fraud"] = Screen(s.redis_admin, FraudDirectory(s.session_factory, s.redis_admin,
                                                            s.settings.redis_prefix),
                              s.settings.redis_prefix)
    return ext["fraud"]


@bp.record_once
def warm(state) -> None:
    """Read the map when the app starts, as routes are read before the first call: the
    first caller does not pay for it. The embedded database is migrated later: read then
    on first use."""
    if state.app.extensions["dni"].settings.embedded_database:
        return
    with state.app.app_context():
        try:
            screen().directory.current()
        except SQLAlchemyError:
            log.warning("fraud map not read at start (SQL unavailable): read on first use")


def check(event: CallEventIn, payload: dict) -> Screening | None:
    """Screen a new call; its verdict rides on the event into the call's row."""
    try:
        verdict = screen().check(event.provider, event.provider_call_id, event.from_raw,
                                 event.to_raw, payload, event.occurred_at)
    except SQLAlchemyError:  # no map yet and SQL down: nothing known, nothing refused
        return None
    event.fraud = verdict.facts()
    return verdict


# -- carrier webhooks --------------------------------------------------------------------------


def twilio_pre_ring(event: CallEventIn) -> Response | None:
    """For the voice webhook of a new call: the TwiML that blocks or challenges it (the call
    stored first, with its signals), or None to go on as usual."""
    from dni_server.api.webhooks import store, twiml

    verdict = check(event, request.form.to_dict())
    if verdict is None or verdict.action not in ("block", "challenge"):
        return None
    store(event)
    response = VoiceResponse()
    if verdict.action == "block":
        response.reject(reason="rejected")
        g.webhook_result = "blocked"
        return twiml(response)
    return twiml(challenge_twiml(verdict.policy["challenge_text"], 0))


def challenge_step(text: str) -> dict:
    """The challenge is routing's ``press`` step: press 1, asked again once."""
    return flow.validate_ivr([{"type": "press", "text": text, "digit": "1",
                               "retries": CHALLENGE_RETRIES}])[0]


def challenge_text(dialled: str | None) -> str:
    """The dialled number's site's challenge, from the cached map."""
    from attribution.fraud.screen import e164

    fraud = screen().directory.current()
    site_id = (fraud.owners.get(e164(dialled) or "") or {}).get("site_id")
    return effective(fraud.policies.get(site_id))["challenge_text"]


def challenge_twiml(text: str, tries: int) -> VoiceResponse:
    from dni_server.api.webhooks import callback_url

    ask = flow.ask(challenge_step(text), 0)
    response = VoiceResponse()
    gather = Gather(num_digits=ask.digits, timeout=flow.GATHER_TIMEOUT,
                    action=callback_url(f"/webhooks/twilio/challenge/{tries}"), method="POST",
                    action_on_empty_result=True)
    gather.say(ask.text)
    response.append(gather)
    return response


@bp.post("/webhooks/twilio/challenge/<int:tries>")
def twilio_challenge(tries: int):
    """The challenged caller's key: 1 goes on (routed or forwarded), anything else is asked
    again, then hung up."""
    from dni_server.api import routing_calls, webhooks

    event = webhooks.twilio_webhook("voice")
    if event is None:
        raise Invalid("CallSid is required")
    step = challenge_step("-")
    passed = (request.form.get("Digits") or "").strip() == step["digit"]
    if not passed and tries < step["retries"]:
        text = challenge_text(event.to_raw)
        return webhooks.twiml(challenge_twiml(text, tries + 1))
    outcome = "challenge_passed" if passed else "challenge_failed"
    store_outcome(event, outcome)
    g.webhook_result = outcome
    if not passed:
        response = VoiceResponse()
        response.hangup()
        return webhooks.twiml(response)
    route = services().routes.route(event.to_raw)
    if (plan := routing_calls.plan_for(route)) is not None:
        return routing_calls.start_routed(event, plan)
    return webhooks.twiml(webhooks.forward(route, event))


def store_outcome(event: CallEventIn, outcome: str, unless_decided: bool = False) -> None:
    """The challenge's outcome on the call (``challenge_passed`` / ``challenge_failed``);
    ``unless_decided``: only while the challenge is still open."""
    try:
        call = db.session.scalar(select(Call).where(Call.provider == event.provider,
                                                    Call.provider_call_id == event.provider_call_id))
        if call is not None and (not unless_decided or call.fraud_action == "challenge"):
            call.fraud_action = outcome
            # What a routed call's buyers filter on (its risk among them), as ``store`` keeps.
            g.webhook_call_facts = {name: getattr(call, name) for name in CALL_FACTS}
            db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("SQL unavailable: challenge outcome of %s not stored", event.provider_call_id)


def telnyx_pre_ring(event: CallEventIn, body: dict) -> bool:
    """For a Telnyx event: True when this module answered it. A blocked call is stored with
    its signals and rejected with Call Control's ``reject`` command on its first sight; a
    challenged one is answered and asked to press 1 (``fraud_telnyx``), whose steps are
    handled there too."""
    from dni_server.api import fraud_telnyx
    from dni_server.api.webhooks import first_sight, store

    if fraud_telnyx.handles(event, body):
        return True
    if event.kind != "call.initiated" or event.leg != "call":
        return False
    verdict = check(event, body)
    if verdict is None or verdict.action not in ("block", "challenge"):
        return False
    result = store(event)
    if verdict.action == "challenge":
        if first_sight(event, result):
            fraud_telnyx.start(event, body)
        g.webhook_result = "challenged"
        return True
    settings = services().settings
    control_id = body["data"]["payload"].get("call_control_id")
    if settings.telnyx_api_key and isinstance(control_id, str) and control_id and \
            first_sight(event, result):
        services().commands.submit(telnyx_reject, settings.telnyx_api_url,
                                   settings.telnyx_api_key, control_id,
                                   command_id=f"reject:{body['data'].get('id')}")
    g.webhook_result = "blocked"
    return True


# -- the admin API -----------------------------------------------------------------------------

admin = Blueprint("fraud_admin", __name__)
admin.before_request(authenticate)


def who() -> str:
    found = principal()
    return f"token:{found.token_id}" if found.token_id is not None else found.scope


def invalidate() -> None:
    screen().directory.invalidate()


@admin.post("/v1/block-list")
@documented("Block a number or prefix (network-wide, or one site's calls)", entry_out,
            status=201, body=BlockEntryInSchema, errors=(400, 401, 403, 404, 422))
def add_entry():
    data = entry_in.load(json_object())
    site = get_site(data["site"]) if data["site"] is not None else None
    entry = lists.add(db.session, value=data["value"], site_id=site.id if site else None,
                      reason=data["reason"], expires_at=data["expires_at"], added_by=who())
    db.session.commit()
    invalidate()
    return jsonify(entry_out.dump(entry)), 201


@admin.post("/v1/block-list/import")
@documented("Import block-list entries from CSV (value, reason, expires_at, site): a report "
            "per row (send text/csv)", import_out, errors=(400, 401, 403, 413, 415, 422))
def import_entries():
    """Each good row is added; each bad one reported with its line and why."""
    require_admin()
    if request.mimetype != "text/csv":
        raise ApiError("send the CSV as text/csv", status=415, code="unsupported_media_type")
    text = request.get_data(as_text=True)

    def site_id_of(ref: str) -> int:
        try:
            return get_site(ref).id
        except NotFound:
            raise ValueError(f"unknown site {ref!r}") from None

    try:
        report = lists.import_csv(db.session, text, added_by=who(), site_id_of=site_id_of)
    except ValueError as exc:
        db.session.rollback()
        raise Invalid(str(exc)) from None
    db.session.commit()
    invalidate()
    return jsonify(import_out.dump(report))


@admin.get("/v1/block-list")
@documented("The block list (live and expired entries, newest first)", entry_list,
            errors=(401, 403, 404, 422))
def list_entries():
    deny_publishers()  # the network's list: other publishers' callers are on it
    query = select(BlockEntry).order_by(BlockEntry.id.desc()).limit(limit_arg())
    if "site" in request.args:
        query = query.where(BlockEntry.site_id == get_site(request.args["site"]).id)
    return jsonify(entry_list.dump({"entries": db.session.scalars(query).all()}))


@admin.delete("/v1/block-list/<entry_ref>")
@documented("Remove an entry from the block list", None, status=204,
            errors=(401, 403, 404))
def remove_entry(entry_ref: str):
    require_admin()
    entry_id = parse_id(entry_ref)
    entry = db.session.get(BlockEntry, entry_id) if entry_id is not None else None
    if entry is None:
        raise NotFound(f"unknown block-list entry {entry_ref!r}", code="unknown_entry")
    db.session.delete(entry)
    db.session.commit()
    invalidate()
    return Response(status=204)


@admin.get("/v1/sites/<site_ref>/fraud-policy")
@documented("A site's fraud policy (thresholds and signal settings)", policy_out,
            errors=(401, 403, 404))
def show_policy(site_ref: str):
    site = get_site(site_ref)
    row = db.session.get(FraudPolicy, site.id)
    own = dict(row.settings) if row is not None else {}
    return jsonify(policy_out.dump({"site_id": site.id, "settings": own,
                                    "effective": effective(own)}))


@admin.put("/v1/sites/<site_ref>/fraud-policy")
@documented("Set a site's fraud policy", policy_out, body=PolicyInSchema,
            errors=(400, 401, 403, 404, 422))
def set_policy(site_ref: str):
    site = get_site(site_ref)
    data = policy_in.load(json_object())
    try:
        settings = validate_policy(data["settings"])
    except ValueError as exc:
        raise Invalid(str(exc), fields={"settings": [str(exc)]}) from None
    row = db.session.get(FraudPolicy, site.id) or FraudPolicy(site_id=site.id)
    row.settings, row.updated_by = settings, who()
    db.session.add(row)
    db.session.commit()
    invalidate()
    return jsonify(policy_out.dump({"site_id": site.id, "settings": settings,
                                    "effective": effective(settings)}))


def spam_disposition(call: Call) -> None:
    """A ``spam`` disposition puts the caller on the site's block list, with who set it."""
    if lists.from_spam_disposition(db.session, call, f"disposition:{who()}") is not None:
        db.session.flush()
        invalidate()  # read again at the next call (the commit follows in the view)


@admin.get("/v1/reports/quality")
@documented("Publisher quality: each publisher's fraud rates against the network's, with how "
            "sure the difference is", quality_out, errors=(401, 404, 422),
            query=tuple((name, text, {"type": "string"}) for name, text in (
                ("start", "first day, YYYY-MM-DD, UTC (default: 29 days before end)"),
                ("end", "last day, YYYY-MM-DD, UTC (default: today)"),
                ("site", "a site id or key"))))
def quality():
    """A publisher's token sees its own row only (the baseline is the network's aggregate)."""
    end = date_arg(request.args, "end", utcnow().date())
    start = date_arg(request.args, "start", end - dt.timedelta(days=29))
    if start > end:
        raise Invalid("start must not be after end", fields={"start": ["after end"]})
    site = get_site(request.args["site"], lookup_only=True) if "site" in request.args else None
    at = dt.datetime.combine(start, dt.time(), dt.UTC)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    report = quality_report(db.session, at, until, site_id=site.id if site else None,
                            publisher=publisher_scope())
    return jsonify(quality_out.dump(report))


def visible_call(call_ref: str) -> Call:
    from dni_server.api.calls import get_call

    return get_call(call_ref)  # a publisher sees its own calls only


@admin.get("/v1/calls/<call_ref>/fraud")
@documented("A call's fraud signals, risk score and review", fraud_state, errors=(401, 404))
def show_fraud(call_ref: str):
    return jsonify(fraud_state.dump(visible_call(call_ref)))


@admin.post("/v1/calls/<call_ref>/review")
@documented("Approve or reject a call held for review", fraud_state, body=ReviewInSchema,
            errors=(400, 401, 403, 404, 409, 422))
def review_call(call_ref: str):
    call = visible_call(call_ref)
    data = review_in.load(json_object())
    try:
        review(db.session, call, data["decision"], data["reason"], who())
    except ReviewError as exc:
        raise Invalid(str(exc), code="not_held") from None
    db.session.commit()
    return jsonify(fraud_state.dump(call))
