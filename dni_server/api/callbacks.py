"""Web callbacks: the page asks to be called back (public, CORS-open like the sessions API),
asks how it went, and the admin API lists a site's callbacks.

The request path only stores the request: the worker places the calls
(``attribution.callbacks.calling``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Flask, current_app, request
from sqlalchemy import select

from attribution.callbacks import intake
from attribution.callbacks.limits import CallbackLimits
from attribution.callbacks.models import Callback
from attribution.callbacks.settings import CallbackSettings
from dni_server.api.auth import publisher_scope, token_required
from dni_server.api.body import json_object
from dni_server.api.callback_schemas import (
    CallbackAnswerSchema,
    CallbackListSchema,
    CallbackRequestSchema,
    CallbackStatusSchema,
)
from dni_server.api.cors import enable_cors, granted_json, page_site
from dni_server.config import Settings
from dni_server.converters import count_arg
from dni_server.errors import ApiError, Invalid, NotFound
from dni_server.extensions import db, services
from dni_server.openapi import documented
from dni_server.tokens import derive_key
from pools.models import Pool, Site, utcnow

bp = Blueprint("callbacks", __name__)
enable_cors(bp)
admin_bp = token_required(Blueprint("callbacks_admin", __name__))
callback_request = CallbackRequestSchema()
REFUSALS = {
    "to_number": "too many callback requests to this number; try again later",
    "numbers": "too many different numbers asked for: requests from this visitor are "
               "refused for a while",
    "flagged": "requests from this visitor are refused for a while",
    "site_busy": "this site has too many callbacks in progress; try again later",
}


@dataclass
class CallbackServices:
    settings: CallbackSettings
    limits: CallbackLimits
    secret: bytes  # keys the visitors' IP + user agent hashes


def callback_settings(settings: Settings) -> CallbackSettings:
    """The callback settings out of the app's (``dni_server.config`` reads and checks the
    ``DNI_CALLBACK_*`` variables)."""
    return CallbackSettings(
        carrier=settings.callback_carrier, retry_seconds=settings.callback_retry_seconds,
        max_attempts=settings.callback_max_attempts,
        business_timeout=settings.callback_business_timeout,
        visitor_timeout=settings.callback_visitor_timeout,
        claim_seconds=settings.callback_claim_seconds,
        site_in_progress=settings.callback_site_in_progress,
        twilio_api_url=settings.twilio_api_url,
        telnyx_connection_id=settings.telnyx_connection_id)


def init_app(app: Flask) -> None:
    """Build the callback settings (from ``dni_server.config``) and limits, and register
    the blueprints."""
    svc = app.extensions["dni"]
    settings = callback_settings(svc.settings)
    app.extensions["dni_callbacks"] = CallbackServices(
        settings, CallbackLimits(svc.redis, svc.settings.redis_prefix, settings.limits()),
        derive_key(svc.settings.secret_key, "callback client hashes"))
    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    from dni_server.api import callback_legs

    app.register_blueprint(callback_legs.bp)


def business_router(app: Flask):
    """Callbacks' business legs on routed pools go to the plan's buyers: one router per
    app, sharing the routing map of routed calls (so an admin change is read at once)."""
    if "dni_callback_router" not in app.extensions:
        from dni_server.api.routing_calls import routed_calls
        from routing.callback_offers import CallbackRouting, RoutedBusiness

        with app.app_context():
            routed = routed_calls()
        app.extensions["dni_callback_router"] = RoutedBusiness(CallbackRouting(
            routed.redis, routed.directory, routed.prefix, routed.capacity))
    return app.extensions["dni_callback_router"]


def callback_services() -> CallbackServices:
    return current_app.extensions["dni_callbacks"]


def iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def status_view(callback: Callback) -> dict:
    open_ = callback.status in ("scheduled", "calling")
    return {"id": callback.id, "status": callback.status,
            "at": iso(callback.next_attempt_at) if open_ else None,
            "attempts": callback.attempts, "last_outcome": callback.last_outcome,
            "history": [{"at": a.get("at"), "outcome": a.get("outcome")}
                        for a in callback.attempt_log or []]}


ERRORS = (400, (404, "unknown site or session"), 413, 422,
          (429, "past an abuse limit (see the error's code and Retry-After)"))


@bp.post("/v1/callbacks")
@documented("Ask to be called back", CallbackAnswerSchema, status=202,
            body=CallbackRequestSchema, errors=ERRORS, public=True)
def create_callback():
    """Validate the number, check the abuse limits, store the request with its evidence;
    the worker calls the business, then the visitor."""
    body = callback_request.load(json_object())
    ctx = services().sessions
    site = page_site(ctx.sites, body["site"], request.environ)
    pools = ctx.ids.pools(body["session_id"])
    if pools is None:
        raise NotFound("unknown session", code="unknown_session")
    cbs = callback_services()
    req = intake.CallbackRequest(
        session_id=body["session_id"], session_pools=tuple(pools), phone=body["phone"],
        consent_text=body["consent"], page_url=body["url"], name=body["name"], at=body["at"],
        ip=request.remote_addr, user_agent=request.environ.get("HTTP_USER_AGENT", ""))
    try:
        callback = intake.request_callback(db.session, cbs.limits, cbs.secret, site, req,
                                           utcnow())
    except intake.NotCallable as exc:
        raise Invalid("the request has invalid fields", fields={exc.field: str(exc)}) from None
    except intake.CallbackRefused as exc:
        db.session.commit()  # the client's earlier callbacks, flagged
        verdict = exc.verdict
        retry = 86_400 if verdict.flagged else 900
        raise ApiError(REFUSALS[verdict.reason], status=429, code=f"callback_{verdict.reason}",
                       retry_after=retry) from None
    db.session.commit()
    deferred = callback.next_attempt_at > callback.wanted_at
    return granted_json({"id": callback.id, "status": callback.status,
                         "at": iso(callback.next_attempt_at), "deferred": deferred,
                         "reason": "outside_calling_hours" if deferred else None}), 202


@bp.get("/dni-callback.js")
def callback_addon():
    """The web callback add-on (loaded by ``dni('callback')``), served as the snippet is."""
    from dni_server.api.snippet import STATIC, _script

    return _script(STATIC / "dni-callback.js")


@bp.get("/v1/callbacks/<callback_id>")
@documented("How a callback went (only for the session that asked)", CallbackStatusSchema,
            errors=((404, "unknown callback, or another session's"),
                    (422, "a query parameter holding a NUL character")), public=True,
            query=(("session_id", "the session that asked", {"type": "string"}),))
def callback_status(callback_id: str):
    callback = intake.session_callback(db.session, callback_id[:40],
                                       request.args.get("session_id", "")[:128])
    if callback is None:
        raise NotFound("unknown callback", code="unknown_callback")
    return granted_json(status_view(callback))


@admin_bp.get("/v1/callbacks")
@documented("Web callbacks, newest first (of one site with ?site=KEY)", CallbackListSchema,
            errors=(401, 404, 422),
            query=(("site", "a site's key: only its callbacks", {"type": "string"}),
                   ("limit", "callbacks per page (default 100)",
                    {"type": "integer", "minimum": 1, "maximum": 1000})))
def list_callbacks():
    """Newest first; a publisher token sees only the callbacks of its own pools."""
    limit = count_arg(request.args, "limit", 100, 1, 1000)
    query = select(Callback).order_by(Callback.created_at.desc(), Callback.id).limit(limit)
    if site_key := request.args.get("site"):
        site = db.session.scalar(select(Site).where(Site.key == site_key[:40]))
        if site is None:
            raise NotFound("unknown site", code="unknown_site")
        query = query.where(Callback.site_id == site.id)
    scope = publisher_scope()
    if scope is not None:
        query = query.join(Pool, Pool.id == Callback.pool_id).where(Pool.publisher == scope)
    return {"callbacks": [admin_view(c) for c in db.session.scalars(query)]}


def admin_view(callback: Callback) -> dict:
    return status_view(callback) | {
        "site_id": callback.site_id, "pool_id": callback.pool_id,
        "session_id": callback.session_id, "phone": callback.phone, "name": callback.name,
        "page_url": callback.page_url, "consent_text": callback.consent_text,
        "requested_at": iso(callback.requested_at), "calling_rule": callback.calling_rule,
        "call_id": callback.call_id, "flagged": callback.flagged}
