"""CORS for the public snippet API: a site's own pages may call it, other origins may not.

A site with domains listed (``acme.example``) serves pages on those hosts and their
subdomains (``www.acme.example``), on any scheme and port. A browser page on any other
origin asking for one of its sessions is refused (403 ``foreign_origin``, no lease, and no
CORS grant, so the page cannot even read the refusal). A site with no domains listed, and a
request without an ``Origin`` (not from a browser page), are not checked.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Response, g, request
from werkzeug.datastructures import Headers

from dni_server.errors import Forbidden, NotFound, answer_error

ALLOW_METHODS = "POST, OPTIONS"
ALLOW_HEADERS = "Content-Type"
PREFLIGHT_MAX_AGE = "86400"
# No credentials: the snippet keeps its own ids in first-party storage, so a wildcard is
# safe and lets browsers cache the (rare) preflight for a day.
GRANT = ("Access-Control-Allow-Origin", "*")


class GrantedJSON(Response):
    """A snippet answer built with its CORS grant on: ``grant`` has nothing left to do."""

    default_mimetype = "application/json"


def answer_bytes(payload: dict) -> bytes:
    """A snippet answer's body: ``payload`` as jsonify writes it (the same bytes)."""
    return orjson.dumps(payload) + b"\n"


def granted_json(payload: dict) -> GrantedJSON:
    """``payload`` as jsonify writes it, with the CORS grant. A successful answer on every
    page view: no second encoding, no header set after the fact."""
    # Headers built whole, Content-Type in them: given a list without it, werkzeug copies
    # the list and asks whether it holds a Content-Type, and that miss raises and catches
    # a BadRequestKeyError (an HTTP exception, message and all) on every answer.
    return GrantedJSON(answer_bytes(payload),
                       headers=Headers([("Content-Type", "application/json"), GRANT]))


def host_of(value: str) -> str:
    """The lower-case host of an origin or of a domain entry (which may carry a scheme)."""
    text = value.strip().lower()
    if "://" not in text:
        text = "//" + text
    try:
        return (urlsplit(text).hostname or "").rstrip(".")
    except ValueError:  # a malformed port or IPv6 literal: matches nothing
        return ""


def origin_allowed(origin: str | None, domains) -> bool:
    """Whether a page on ``origin`` may use a site whose pages live on ``domains``."""
    if not origin or not domains:
        return True
    host = host_of(origin)
    if not host:
        return False
    for domain in domains:
        allowed = host_of(str(domain))
        if allowed and (host == allowed or host.endswith("." + allowed)):
            return True
    return False


class ForeignOrigin(Forbidden):
    """A page outside the site's domains: refused, and answered without the CORS grant."""


def refuse_foreign_origin(domains, environ: dict) -> None:
    """Raise ForeignOrigin for a request from a page outside the site's ``domains``."""
    origin = environ.get("HTTP_ORIGIN")  # the header, without building Headers
    if not origin_allowed(origin, domains):
        raise ForeignOrigin(f"pages on {origin[:200]!r} may not use this site: add the domain "
                            "to the site's domains", code="foreign_origin")


def page_site(sites, key: str, environ: dict):
    """The site a page's call names (``sites``: the SiteDirectory), when that page may use
    it. Raises NotFound (unknown site) or ForeignOrigin."""
    site = sites.get(key)
    if site is None:
        raise NotFound(f"unknown site {key!r}", code="unknown_site")
    refuse_foreign_origin(site.domains, environ)
    return site


def enable_cors(bp: Blueprint) -> None:
    """Grant CORS on ``bp``'s answers, except a ForeignOrigin refusal."""

    @bp.errorhandler(ForeignOrigin)
    def refused(exc: ForeignOrigin):
        g.cors_refused = True  # the page may not even read the refusal
        return answer_error(exc)

    @bp.after_request
    def grant(response):
        if type(response) is GrantedJSON or g.get("cors_refused"):
            return response
        response.headers[GRANT[0]] = GRANT[1]
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response
