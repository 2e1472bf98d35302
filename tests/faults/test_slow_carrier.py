"""A slow carrier API: Telnyx's transfer command hangs while calls arrive under load.

The service sends the transfer command off the request path (attribution/carriers.py
CommandSender): it waits at most 3 s for each try and sends the same command id again when
it got no answer. The webhooks answer at once, and the snippet API, which shares the web
workers, is not held up: what its users see meanwhile is measured and reported.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
import time
from collections import Counter

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faultkit import Traffic, p99_ms, report, sql_scalar, wait_for
from test_webhooks import TELNYX_PUBLIC, TELNYX_SEED, telnyx_event

from factories import numbers

CARRIER_DELAY = 5.0  # longer than the service's 3 s timeout


class SlowCarrier:
    """Telnyx's call-command API on 127.0.0.1, answering each command after a long pause."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(self.path)
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(CARRIER_DELAY)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"data": {"result": "ok"}}')
                except OSError:
                    pass  # the service gave up waiting, as it should

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def send_telnyx(base: str, index: int, to: str) -> tuple[int, float]:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    body = telnyx_event("call.initiated", f"ev-{index}", now, state="parked")
    body["data"]["payload"].update(call_control_id=f"v3:ctl-{index}",
                                   call_session_id=f"sess-{index}", to=to)
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    signature = Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).sign(stamp.encode() + b"|" + raw)
    started = time.monotonic()
    response = requests.post(base + "/webhooks/telnyx", data=raw, timeout=30, headers={
        "Content-Type": "application/json", "telnyx-timestamp": stamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()})
    return response.status_code, time.monotonic() - started


def test_a_slow_carrier_api_under_load(private_redis, fault_database, start_service):
    carrier = SlowCarrier()
    service = start_service(fault_database, private_redis.url, worker=False,
                            DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC, DNI_TELNYX_API_KEY="KEY_test",
                            DNI_TELNYX_API_URL=carrier.url)
    site, _pool = service.make_pool(400)
    to = numbers(400, start=200)[0]
    traffic = Traffic(service.base, site["key"], [to], threads=2, pause=0.02,
                      mix=("session", "heartbeat", "heartbeat")).start()
    webhooks: list[tuple[int, float]] = []
    try:
        wait_for(traffic, 0, 20, at_least=2)
        slow_from = time.monotonic()

        def caller(first: int) -> None:
            for i in range(first, first + 3):
                webhooks.append(send_telnyx(service.base, i, to))

        callers = [threading.Thread(target=caller, args=(n * 10,)) for n in range(2)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(60)
        deadline = time.monotonic() + 30
        while len(set(carrier.received)) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(CARRIER_DELAY)  # the carrier still holds the commands: keep measuring
        slow_until = time.monotonic()
        wait_for(traffic, slow_until, 10, at_least=1)
    finally:
        traffic.stop()
        carrier.close()

    statuses = Counter(a.status for a in traffic.answers)
    assert all(a.status == 200 for a in traffic.answers), (statuses, service.logs())
    assert [status for status, _ in webhooks] == [204] * 6
    # Every call was stored, and a transfer asked for each (tries after no answer repeat
    # the same command id, which Telnyx uses to ignore repeats).
    assert sql_scalar(fault_database, "SELECT count(*) FROM calls WHERE provider = 'telnyx'") == 6
    assert sorted(set(carrier.received)) == sorted(
        {f"/v2/calls/v3:ctl-{i}/actions/transfer" for n in range(2) for i in range(n * 10, n * 10 + 3)})

    during = traffic.since(slow_from, slow_until)
    before = traffic.since(0, slow_from)
    report("slow_carrier", carrier_delay_s=CARRIER_DELAY,
           webhook_seconds=sorted(round(s, 2) for _, s in webhooks),
           snippet_answers_during=len(during),
           snippet_rate_before_per_s=round(len(before) / max(slow_from - before[0].started, 1), 1),
           snippet_rate_during_per_s=round(len(during) / (slow_until - slow_from), 1),
           snippet_p99_during_ms=round(p99_ms(during), 1),
           snippet_max_during_ms=round(1000 * max(a.seconds for a in during), 1),
           snippet_over_1_5s=sum(1 for a in during if a.seconds > 1.5),
           snippet_p99_before_ms=round(p99_ms(before), 1), statuses=dict(statuses))
