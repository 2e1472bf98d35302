"""The number for ``<amp-call-tracking>`` on AMP pages, with AMP's CORS rules.

AMP fetches the config with credentials from the page's origin, which is either an AMP
cache (``*.cdn.ampproject.org``...) or the publisher's own origin, and names the page's
real origin in ``__amp_source_origin``. Leasing changes state, so the request is refused
unless the ``Origin`` is an AMP cache or one of the site's domains and the source origin
is one of the site's domains, or (no ``Origin``: the page fetched its own origin) it carries
``AMP-Same-Origin: true``. Refusals carry no CORS grant.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError, fields, validate, validates

from attribution import amp, sessions
from dni_server import metrics
from dni_server.api.cors import host_of, origin_allowed
from dni_server.api.schemas import Loose, Reply, optional_text
from dni_server.errors import Forbidden, NotFound
from dni_server.openapi import documented
from dni_server.timefmt import now_ms
from pools.phones import InvalidNumber, normalize

bp = Blueprint("amp", __name__)

# Hosts of the AMP caches (https://cdn.ampproject.org/caches.json and Bing's).
AMP_CACHE_HOSTS = ("cdn.ampproject.org", "amp.cloudflare.com", "bing-amp.com")
SOURCE_ORIGIN = "__amp_source_origin"
EXPOSED = "AMP-Access-Control-Allow-Source-Origin"


class AmpNumberQuerySchema(Loose):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the site's public key"})
    target = fields.String(required=True, validate=validate.Length(min=1, max=40), metadata={
        "description": "the page's number to swap, E.164 (write + as %2B in the URL)"})
    client_id = fields.String(required=True, validate=validate.Regexp(
        amp.CLIENT_ID, error="must be the AMP client id (CLIENT_ID(...)), 4 to 128 "
                             "characters"), metadata={
        "description": "the AMP client id: client_id=CLIENT_ID(dni) in the config URL"})
    url = optional_text(2048)
    referrer = optional_text(2048)
    source_origin = fields.String(data_key=SOURCE_ORIGIN, load_default=None,
                                  validate=validate.Length(max=512), metadata={
                                      "description": "added by the AMP runtime"})

    @validates("target")
    def e164(self, value: str, **_) -> None:
        try:
            normalize(target_text(value))
        except InvalidNumber as exc:
            raise ValidationError(str(exc)) from None


class AmpNumberSchema(Reply):
    """What ``amp-call-tracking`` reads."""

    phoneNumber = fields.String(required=True, metadata={
        "description": "the number to call (the tel: link), E.164"})
    formattedPhoneNumber = fields.String(required=True, metadata={
        "description": "the number to show, as its country writes it"})


query_schema = AmpNumberQuerySchema()


def target_text(raw: str) -> str:
    """A '+' written unencoded in the config URL arrives as a space: put it back."""
    return "+" + raw[1:] if raw.startswith(" ") else raw.strip()


def is_amp_cache(origin: str) -> bool:
    host = host_of(origin)
    return any(host == h or host.endswith("." + h) for h in AMP_CACHE_HOSTS)


def check_amp_origins(domains, source_origin: str | None) -> str | None:
    """Refuse a request AMP's rules do not allow; the origin to grant (None: same origin)."""
    origin = request.headers.get("Origin")
    if origin is None:
        if request.headers.get("AMP-Same-Origin", "").lower() != "true":
            raise Forbidden("an AMP request carries Origin or AMP-Same-Origin: true",
                            code="foreign_origin")
    elif not (is_amp_cache(origin) or origin_allowed(origin, domains)):
        raise Forbidden(f"pages on {origin[:200]!r} may not use this site: add the domain to "
                        "the site's domains", code="foreign_origin")
    if source_origin is None:
        if origin is not None and is_amp_cache(origin):
            raise Forbidden(f"{SOURCE_ORIGIN} is required from an AMP cache",
                            code="foreign_origin")
    elif not origin_allowed(source_origin, domains) or not host_of(source_origin):
        raise Forbidden(f"AMP pages of {source_origin[:200]!r} may not use this site: add the "
                        "domain to the site's domains", code="foreign_origin")
    g.amp_grant = (origin, source_origin)
    return origin


@bp.after_request
def grant(response):
    """CORS for AMP: the origin echoed (credentials are sent), the source origin allowed."""
    origin, source_origin = g.get("amp_grant", (None, None))
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
    if source_origin:
        response.headers[EXPOSED] = source_origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
    response.headers["Vary"] = "Origin"
    # A lease for one visitor: no cache may keep it.
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/v1/amp/number")
@documented("The number for <amp-call-tracking> (AMP pages)", AmpNumberSchema,
            query=(("site", "the site's public key", {"type": "string"}),
                   ("target", "the page's number, E.164 (%2B for +)", {"type": "string"}),
                   ("client_id", "CLIENT_ID(...) substitution", {"type": "string"}),
                   ("url", "the page (SOURCE_URL)", {"type": "string"}),
                   ("referrer", "DOCUMENT_REFERRER", {"type": "string"}),
                   (SOURCE_ORIGIN, "added by the AMP runtime", {"type": "string"})),
            errors=(400, (403, "origin not allowed"), (404, "unknown site or target"), 422),
            public=True)
def amp_number():
    """Lease (or keep) the AMP client's number for the target; fallbacks as the snippet's."""
    args = query_schema.load(request.args.to_dict())
    ctx: sessions.SessionContext = current_app.extensions["dni"].sessions
    site = ctx.sites.get(args["site"])
    if site is None:
        raise NotFound(f"unknown site {args['site']!r}", code="unknown_site")
    check_amp_origins(site.domains, args["source_origin"])
    req = sessions.SessionRequest(
        url=args["url"], referrer=args["referrer"],
        user_agent=request.environ.get("HTTP_USER_AGENT", ""), ip=request.remote_addr)
    try:
        number = amp.amp_number(ctx, site, normalize(target_text(args["target"])),
                                args["client_id"], req, now_ms())
    except amp.UnknownTarget:
        raise NotFound("no pool of this site swaps that number", code="unknown_target") \
            from None
    metrics.observe_numbers([number])
    return jsonify(phoneNumber=number.number, formattedPhoneNumber=number.formatted)

