"""A subscriber's endpoint: a real HTTP server that checks every request as a receiver
following the documentation would, independently of the package's own helper.

It recomputes ``DNI-Signature`` (HMAC-SHA256 of ``"<t>.<raw body>"`` with the secret, hex)
from the raw bytes, refuses a bad or stale signature with 400, and can be told to fail,
answer slowly, send ``Retry-After``, or hold a request until released.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300


class Receiver:
    def __init__(self, secret: str | None = None):
        self.secret = secret
        self.accepted: list[dict] = []  # events answered 2xx, in the order they were taken
        self.seen: list[dict] = []  # every well-signed request, whatever was answered
        self.bad_signatures = 0
        self.headers: list[dict] = []
        self.fail_next = 0
        self.fail_status = 503
        self.retry_after: str | None = None
        self.fail_types: set[str] = set()  # event types always answered fail_status
        self.delay = 0.0
        self.hold = threading.Event()  # cleared: requests wait here until set
        self.hold.set()
        self.arrived = threading.Event()  # set when a request arrives
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.set()
                receiver.hold.wait(60)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.headers.append(dict(self.headers))
                    if not receiver.signed(raw, self.headers.get("DNI-Signature")):
                        receiver.bad_signatures += 1
                        return self.answer(400)
                    event = json.loads(raw)
                    receiver.seen.append(event)
                    if receiver.fail_next > 0 or event["type"] in receiver.fail_types:
                        receiver.fail_next = max(0, receiver.fail_next - 1)
                        return self.answer(receiver.fail_status, receiver.retry_after)
                    receiver.accepted.append(event)
                self.answer(204)

            def answer(self, status, retry_after=None):
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/dni"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def signed(self, raw: bytes, header: str | None) -> bool:
        """The documented check: parse t and v1, recompute, compare, check the age."""
        if not header or self.secret is None:
            return False
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts:
            return False
        expected = hmac.new(self.secret.encode(), parts["t"].encode() + b"." + raw,
                            hashlib.sha256).hexdigest()
        return (hmac.compare_digest(expected, parts["v1"])
                and abs(time.time() - int(parts["t"])) <= TOLERANCE)

    def types(self, events=None) -> list[tuple]:
        return [(e["type"], e["data"].get("id")) for e in (self.accepted if events is None
                                                           else events)]

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
