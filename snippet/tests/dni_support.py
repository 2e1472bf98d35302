"""Servers for the snippet's browser tests and bench: fixture pages, and a fake service.

The pages and the service run on different 127.0.0.1 ports, so every call the snippet makes is
a real cross-origin request. The fake answers the public snippet API (README, "API") and
records what it was sent; tests use it for the fault cases (down, slow, fallback, a changed
number), the real service for the happy paths.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import phonenumbers

SNIPPET_DIR = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BUILT = SNIPPET_DIR.parent / "dni_server" / "static" / "dni.js"
BUILT_TOUCH = BUILT.with_name("dni-touch.js")  # the add-on dni.js loads from its own base

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]
# Playwright turns the back/forward cache off by default; the bfcache test needs it on.
CHROMIUM_IGNORE_DEFAULT_ARGS = ["--disable-back-forward-cache"]
# Headless Chromium says "HeadlessChrome", which the service rightly treats as a bot.
DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/156.0.0.0 Safari/537.36")


def launch(playwright):
    """The system's Chromium, headless, as every browser test and the bench use it."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        ignore_default_args=CHROMIUM_IGNORE_DEFAULT_ARGS)


def national_digits(e164: str) -> str:
    """'+442079460000' -> '02079460000': the national number with any trunk prefix."""
    number = phonenumbers.parse(e164)
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return re.sub(r"\D", "", formatted)


def iso_ms(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (the snippet's timeout) is expected here


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # "no-cache", never "no-store": a no-store page or API answer keeps Chrome from putting
        # the page in the back/forward cache.
        self.send_header("Cache-Control", "no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _serve(handler_class, owner) -> _Server:
    handler = type("Handler", (handler_class,), {"owner": owner})
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server


# -- fixture pages -----------------------------------------------------------------------


class PageServer:
    """Serves snippet/tests/fixtures/*.html with {{snippet}} replaced by the embed tag.

    ``configure`` sets where the tag points (``src``: the origin serving dni.js; ``api``: a
    data-api override; ``site``: the key) and any extra attributes. Pages can also be
    registered from a test with ``add``. The built dni.js is served here too, for tests whose
    service is down.
    """

    def __init__(self):
        self.extra_pages: dict[str, str] = {}
        self.configure("http://127.0.0.1:9", "no-site")
        self.server = _serve(_PageHandler, self)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def configure(self, src: str, site: str, api: str | None = None, attrs: str = "") -> None:
        api_attr = f' data-api="{api}"' if api else ""
        self.tag = (f'<script async src="{src}/dni.js" data-site="{site}"{api_attr}'
                    f"{' ' + attrs if attrs else ''}></script>")

    def add(self, name: str, html: str) -> str:
        self.extra_pages[name] = html
        return f"{self.url}/{name}"

    def page(self, name: str) -> str:
        return f"{self.url}/{name}"

    def html(self, name: str) -> str | None:
        if name in self.extra_pages:
            text = self.extra_pages[name]
        else:
            path = FIXTURES / name
            if not path.is_file() or path.parent != FIXTURES:
                return None
            text = path.read_text()
        return text.replace("{{snippet}}", self.tag)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _PageHandler(_Base):
    def do_GET(self):  # noqa: N802
        path = self.path.split("?", 1)[0].lstrip("/")
        if path in ("dni.js", "dni-touch.js"):
            built = BUILT if path == "dni.js" else BUILT_TOUCH
            self.send(200, built.read_bytes(), "application/javascript; charset=utf-8")
            return
        html = self.owner.html(path)
        if html is None:
            self.send(404, b"not found", "text/plain")
        else:
            self.send(200, html.encode(), "text/html; charset=utf-8")


# -- the fake service --------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    body: dict | None
    headers: dict
    at: float


@dataclass
class FakeService:
    """Answers POST /v1/sessions and /v1/sessions/<id>/heartbeat like the real service, and
    serves the built dni.js and dni-touch.js (``scripts`` lists each fetch).

    Knobs, all changeable while a test runs: ``pools`` (target -> numbers to lease, in order),
    ``lease_seconds``, ``renew_in``, ``delay`` (seconds before any answer), ``fallback``
    (reason: answer every target with its fallback number), ``fallback_numbers`` (target ->
    fallback, default the target itself), ``swap_on_heartbeat`` (target -> number a renewal
    answers with), ``heartbeat_status`` (answer renewals with this error status),
    ``expire_on_heartbeat`` (renewals find the leases lapsed: reason "expired").
    """

    site: str = "site_test_key"
    pools: dict = field(default_factory=lambda: {"+18005550100": ["+18005550123",
                                                                   "+18005550124"]})
    lease_seconds: float = 300
    renew_in: int = 100
    delay: float = 0.0
    fallback: str | None = None
    fallback_numbers: dict = field(default_factory=dict)
    swap_on_heartbeat: dict = field(default_factory=dict)
    heartbeat_status: int | None = None
    expire_on_heartbeat: bool = False
    calls: list = field(default_factory=list)
    scripts: list = field(default_factory=list)  # paths of the scripts fetched, in order
    sessions: dict = field(default_factory=dict)
    leases: int = 0

    def start(self) -> FakeService:
        self._lock = threading.Lock()
        self.server = _serve(_ServiceHandler, self)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what the snippet sent ----------------------------------------------------------

    def posts(self, kind: str | None = None) -> list[Call]:
        """POSTs received; kind 'lease' or 'heartbeat' narrows them."""
        out = [c for c in self.calls if c.method == "POST"]
        if kind == "lease":
            out = [c for c in out if c.path == "/v1/sessions"]
        elif kind == "heartbeat":
            out = [c for c in out if c.path.endswith("/heartbeat")]
        return out

    def preflights(self) -> list[Call]:
        return [c for c in self.calls if c.method == "OPTIONS"]

    def wait_for(self, count: int, kind: str | None = None, timeout: float = 5.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.posts(kind)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} {kind or 'POST'} calls, got {self.posts(kind)}")

    # -- answers -------------------------------------------------------------------------

    def entry(self, target: str, number: str, expires: float | None, reason=None,
              session_id: str = "s_bot") -> dict:
        out = {"session_id": session_id, "target": target, "number": number,
               "expires_at": iso_ms(expires) if expires else None,
               "fallback": reason is not None,
               "target_national": national_digits(target),
               "number_national": national_digits(number)}
        if reason:
            out["reason"] = reason
        return out

    def answer(self, session_id: str, visitor_id: str, held: dict) -> dict:
        now = time.time()
        if self.fallback:
            numbers = [self.entry(t, self.fallback_numbers.get(t, t), None, self.fallback,
                                  session_id) for t in sorted(self.pools)]
        else:
            numbers = [self.entry(t, n, now + self.lease_seconds, session_id=session_id)
                       for t, n in sorted(held.items())]
        return {"session_id": session_id, "visitor_id": visitor_id, "numbers": numbers,
                "renew_in": self.renew_in}

    def lease(self, body: dict, user_agent: str) -> tuple[int, dict]:
        if body.get("site") != self.site:
            return 404, {"error": {"code": "unknown_site", "message": "unknown site"}}
        visitor = body.get("visitor_id") or "v_" + secrets.token_hex(6)
        if "bot" in user_agent.lower():
            numbers = [self.entry(t, t, None, "bot") for t in sorted(self.pools)]
            return 200, {"session_id": "s_bot", "visitor_id": visitor, "numbers": numbers,
                         "renew_in": 0}
        with self._lock:
            session_id = body.get("session_id")
            if session_id not in self.sessions:
                session_id = "s_" + secrets.token_hex(8)
                self.sessions[session_id] = {t: nums[self.leases % len(nums)]
                                             for t, nums in self.pools.items()}
                self.leases += 1
            held = self.sessions[session_id]
        return 200, self.answer(session_id, visitor, held)

    def heartbeat(self, session_id: str, body: dict) -> tuple[int, dict]:
        if self.heartbeat_status:
            return self.heartbeat_status, {"error": {"code": "x", "message": "refused"}}
        held = self.sessions.get(session_id)
        if held is None or body.get("site") != self.site:
            return 404, {"error": {"code": "unknown_session", "message": "unknown session"}}
        held.update(self.swap_on_heartbeat)
        if self.expire_on_heartbeat:
            numbers = [self.entry(t, t, None, "expired", session_id) for t in sorted(held)]
            return 200, {"session_id": session_id, "visitor_id": None, "numbers": numbers,
                         "renew_in": 0}
        return 200, self.answer(session_id, None, held)


class _ServiceHandler(_Base):
    CORS = {"Access-Control-Allow-Origin": "*"}

    def record(self, body):
        self.owner.calls.append(Call(self.command, self.path, body, dict(self.headers),
                                     time.monotonic()))

    def do_OPTIONS(self):  # noqa: N802
        self.record(None)
        self.send(204, b"", "text/plain", {**self.CORS, "Access-Control-Allow-Methods": "POST",
                                           "Access-Control-Allow-Headers": "Content-Type"})

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        if path in ("/dni.js", "/dni-touch.js"):
            self.owner.scripts.append(path)
            built = BUILT if path == "/dni.js" else BUILT_TOUCH
            self.send(200, built.read_bytes(), "application/javascript; charset=utf-8")
        else:
            self.send(404, b"not found", "text/plain")

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.record(body)
        fake: FakeService = self.owner
        if fake.delay:
            time.sleep(fake.delay)
        match = re.fullmatch(r"/v1/sessions/([^/]+)/heartbeat", self.path)
        if not isinstance(body, dict):
            status, answer = 400, {"error": {"code": "malformed_json", "message": "bad body"}}
        elif self.path == "/v1/sessions":
            status, answer = fake.lease(body, self.headers.get("User-Agent", ""))
        elif match:
            status, answer = fake.heartbeat(match.group(1), body)
        elif re.fullmatch(r"/v1/sessions/[^/]+/touch", self.path):
            self.send(204, b"", "text/plain", self.CORS)  # a touch: recorded above, no answer
            return
        else:
            status, answer = 404, {"error": {"code": "not_found", "message": "no route"}}
        try:
            self.send(status, json.dumps(answer).encode(), "application/json", self.CORS)
        except OSError:
            pass  # the snippet gave up waiting (its timeout) and closed the connection
