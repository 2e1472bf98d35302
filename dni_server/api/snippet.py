"""Serve the snippet (/dni.js), its touch add-on (/dni-touch.js, which dni.js loads once it
shows a swapped number) and a demo landing page that shows it swapping (/demo)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import phonenumbers
from flask import Blueprint, Response, render_template, request

from dni_server.errors import NotFound

bp = Blueprint("snippet", __name__)
STATIC = Path(__file__).resolve().parent.parent / "static"
SNIPPET = STATIC / "dni.js"
TOUCH = STATIC / "dni-touch.js"


@lru_cache(maxsize=8)
def _built(path: Path, mtime_ns: int) -> tuple[bytes, str]:
    """A built file and its strong ETag, read again only when the file changes."""
    body = path.read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:32]


@bp.get("/dni.js")
def snippet():
    """Return the snippet, cacheable for a day; 304 when the browser already has this build."""
    return _script(SNIPPET)


@bp.get("/dni-touch.js")
def touch_addon():
    """Return the touch add-on, served as the snippet is."""
    return _script(TOUCH)


def _script(path: Path) -> Response:
    body, etag = _built(path, path.stat().st_mtime_ns)
    # A day keeps repeat views off the network; a new build reaches everyone within one.
    response = Response(status=304) if etag in request.if_none_match else Response(body)
    response.headers["Content-Type"] = "application/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Lets publishers add integrity= and crossorigin= to the tag (the file holds no secrets).
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.set_etag(etag)
    return response


@bp.get("/demo")
def demo():
    """A landing page with the demo site's number in several formats and a tel: link."""
    from dni_server.demo import DEMO_TARGET, demo_site
    from dni_server.extensions import db

    site = demo_site(db.session)
    if site is None:
        raise NotFound("no demo site: start the service with DNI_DEMO=true", code="no_demo")
    target = site.pools[0].target if site.pools else DEMO_TARGET
    return render_template("demo.html", site_key=site.key, target=target,
                           formats=_formats(target))


def _formats(e164: str) -> list[str]:
    """The target written the ways real pages write it; the snippet must find each one."""
    number = phonenumbers.parse(e164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    digits = "".join(c for c in national if c.isdigit())
    return [national, international, digits]
