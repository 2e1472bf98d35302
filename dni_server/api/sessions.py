"""The public snippet API: start a session, keep it alive. CORS-open, never a 5xx."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from attribution import sessions
from attribution.visits import AdIds
from dni_server import metrics
from dni_server.api.body import json_object
from dni_server.api.cors import enable_cors, granted_json, page_site
from dni_server.api.schemas import (
    HeartbeatRequestSchema,
    QuickLoader,
    SessionAnswerSchema,
    SessionRequestSchema,
    session_answer,
)
from dni_server.converters import count_arg
from dni_server.errors import NotFound
from dni_server.openapi import documented
from dni_server.timefmt import now_ms
from pools.directory import SiteConfig

bp = Blueprint("sessions", __name__)
enable_cors(bp)
session_request = QuickLoader(SessionRequestSchema())
heartbeat_request = QuickLoader(HeartbeatRequestSchema())


# A session's journey in the admin API, a page at a time (a session stores at most 200).
JOURNEY_LIMIT, JOURNEY_MAX_LIMIT = 200, 1000


def context() -> sessions.SessionContext:
    return current_app.extensions["dni"].sessions


# The snippet's answers are hand-built for speed (schemas.session_answer); this schema
# documents them, and a test holds the hand-built keys to its fields.
SNIPPET_ERRORS = (400, (404, "unknown site or session"), 413, 422)


@bp.post("/v1/sessions")
@documented("Start or resume a session and lease its numbers", SessionAnswerSchema,
            body=SessionRequestSchema, errors=SNIPPET_ERRORS, public=True)
def create_session():
    """Start or resume a visit's session and lease its numbers."""
    body, ctx = session_request.load(json_object()), context()
    site = page_site(ctx.sites, body["site"], request.environ)
    return granted_json(new_session_answer(ctx, site, body, request.environ))


@bp.post("/v1/sessions/<session_id>/heartbeat")
@documented("Renew the session's leases", SessionAnswerSchema, body=HeartbeatRequestSchema,
            errors=SNIPPET_ERRORS, public=True)
def heartbeat(session_id: str):
    """Renew the session's leases; no SQL on this path."""
    return granted_json(heartbeat_answer(context(), session_id,
                                         heartbeat_request.load(json_object())))


# The two calls' work past parsing, shared by the views above and by the front that serves
# their ordinary form ahead of Flask (snippet_front): plain values in, the answer out.


def new_session_answer(ctx: sessions.SessionContext, site: SiteConfig, body: dict,
                       environ: dict) -> dict:
    """A checked session request's answer for its site (``cors.page_site``): leases its
    numbers."""
    req = sessions.SessionRequest(
        url=body["url"], referrer=body["referrer"], visitor_id=body["visitor_id"],
        session_id=body["session_id"], ga_client_id=body["ga_client_id"],
        user_agent=environ.get("HTTP_USER_AGENT", ""), ip=environ.get("REMOTE_ADDR"),
        ga_session_id=body["ga_session_id"], fbp=body["fbp"], consent=body["consent"])
    now = now_ms()
    answer = sessions.start_session(ctx, site, req, now)
    metrics.observe_numbers(answer.numbers)
    return session_answer(answer, now)


def heartbeat_answer(ctx: sessions.SessionContext, session_id: str, body: dict) -> dict:
    """A checked heartbeat's answer. Raises NotFound for an unknown session, found before
    anything is renewed."""
    now = now_ms()
    ad = AdIds.parse(body["consent"], body["ga_client_id"], body["ga_session_id"], body["fbp"])
    try:
        answer = sessions.heartbeat(ctx, body["site"], session_id, now, body["url"], ad)
    except sessions.UnknownSession:
        raise NotFound("unknown session", code="unknown_session") from None
    answer.visitor_id = body["visitor_id"] or ""
    metrics.observe_numbers(answer.numbers, renewal=True)
    return session_answer(answer, now)


JOURNEY_PARAMETERS = (
    ("page_views_offset", "page views to skip (page_views.next_offset of the page before)",
     {"type": "integer", "minimum": 0, "maximum": 10**9}),
    ("page_views_limit", f"page views per page (default {JOURNEY_LIMIT})",
     {"type": "integer", "minimum": 1, "maximum": JOURNEY_MAX_LIMIT}),
)


def journey_page(db_session, session_id: str) -> sessions.Journey:
    """The session's pages for the admin API, paged by ``?page_views_offset`` and
    ``?page_views_limit`` (JOURNEY_PARAMETERS)."""
    offset = count_arg(request.args, "page_views_offset", 0, 0, 10**9)
    limit = count_arg(request.args, "page_views_limit", JOURNEY_LIMIT, 1, JOURNEY_MAX_LIMIT)
    return sessions.journey(db_session, session_id, offset, limit)
