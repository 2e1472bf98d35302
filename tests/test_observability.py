"""Metrics at /metrics, /healthz against real outages, JSON logs with request ids."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import request_finished
from ports import free_port, wait_until_up
from prometheus_client.parser import text_string_to_metric_families
from test_call_failures import sql_outage_app
from test_durability import start_redis
from test_webhooks import TELNYX_PUBLIC, telnyx_event, telnyx_post

from dni_server import metrics
from dni_server.config import ConfigError, load_settings
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    GOOGLEBOT_UA,
    AdminClient,
    heartbeat,
    make_pool,
    make_site,
    numbers,
    post_session,
    twilio_call,
    twilio_post,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS_TOKEN = "metrics-token-0123456789"
# One address per /24, so no per-IP or per-subnet limit links them.
IPS = ["192.0.2.10", "198.51.100.10", "203.0.113.10", "192.0.2.200"]


@pytest.fixture
def make_app(make_app):
    """The suite's apps, with a metrics token: /metrics needs one unless made public."""
    return lambda **extra: make_app(**{"DNI_METRICS_TOKEN": METRICS_TOKEN, **extra})


def scrape(client, **headers) -> dict:
    """/metrics parsed with prometheus_client's own parser: {(sample, labels): value}."""
    headers.setdefault("Authorization", f"Bearer {METRICS_TOKEN}")
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# -- counters ---------------------------------------------------------------------------


def test_sessions_count_leases_renewals_and_every_fallback_reason(make_app, redis_client):
    app = make_app(DNI_SESSION_RATE="1/60")
    admin, client = AdminClient(app.test_client(), ADMIN_TOKEN), app.test_client()
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2), fallback="+18005550102")
    google_only = make_site(admin, name="Paid only")
    make_pool(admin, google_only, numbers=numbers(1, start=150), rules=[{"source": "google"}])
    before = scrape(client)

    first = post_session(client, site["key"], ip=IPS[0]).json
    assert post_session(client, site["key"], ip=IPS[0]).json["numbers"][0]["reason"] == \
        "rate_limited"
    second = post_session(client, site["key"], ip=IPS[1]).json
    assert post_session(client, site["key"], ip=IPS[2]).json["numbers"][0]["reason"] == \
        "pool_exhausted"
    assert post_session(client, site["key"], ip=IPS[3], ua=GOOGLEBOT_UA).json["numbers"][0][
        "reason"] == "bot"
    assert heartbeat(client, site["key"], first["session_id"]).json["numbers"][0]["fallback"] \
        is False
    app.extensions["dni"].pools.release(pool["id"], second["session_id"], int(time.time() * 1000))
    assert heartbeat(client, site["key"], second["session_id"]).json["numbers"][0]["reason"] == \
        "expired"
    assert post_session(client, google_only["key"], ip=IPS[3]).json["numbers"][0]["reason"] == \
        "no_pool"
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    assert post_session(down.test_client(), site["key"], ip=IPS[3]).json["numbers"][0][
        "reason"] == "unavailable"

    after = scrape(client)
    assert moved(before, after, "dni_leases_total") == 2
    assert moved(before, after, "dni_lease_renewals_total") == 1
    for reason in metrics.FALLBACK_REASONS:
        assert moved(before, after, "dni_fallbacks_total", reason=reason) == 1, reason
    # Utilisation is read from Redis at scrape time: one of the two numbers is held now.
    labels = {"pool_id": str(pool["id"]), "site_id": str(site["id"])}
    assert value(after, "dni_pool_busy_numbers", **labels) == 1
    assert value(after, "dni_pool_numbers", **labels) == 2
    assert value(after, "dni_pool_utilisation_ratio", **labels) == 0.5
    assert value(after, "dni_dependency_up", dependency="redis") == 1
    assert value(after, "dni_dependency_up", dependency="sql") == 1


def test_webhook_outcomes_and_match_methods_are_counted(make_app, database_url):
    with sql_outage_app(make_app, database_url) as (app, outage):
        admin, client = AdminClient(app.test_client(), ADMIN_TOKEN), app.test_client()
        site = make_site(admin)
        make_pool(admin, site, numbers=numbers(1), fallback="+18005550102")
        static = admin.post("/v1/static-numbers", json={
            "number": "+18005550103", "destination": "+12125550199", "source": "radio",
            "medium": "offline"})
        assert static.status_code == 201, static.json
        leased = post_session(client, site["key"]).json["numbers"][0]["number"]
        app.extensions["dni"].routes.routes()  # cached: the voice answer survives SQL going away
        before = scrape(client)

        voice = twilio_call("CA" + "1" * 32, leased)
        assert twilio_post(client, "/webhooks/twilio/voice", voice).status_code == 200
        assert twilio_post(client, "/webhooks/twilio/voice", voice).status_code == 200
        assert twilio_post(client, "/webhooks/twilio/voice", voice,
                           signature="forged").status_code == 403
        for sid, to in (("2", "+18005550102"), ("3", "+18005550103"), ("4", "+16505550177")):
            twilio_post(client, "/webhooks/twilio/voice", twilio_call("CA" + sid * 32, to))
        assert admin.post("/v1/calls", json={
            "call_id": "api-1", "from": "+14158675309", "to": "+18005550103",
            "started_at": dt.datetime.now(dt.UTC).isoformat()}).status_code == 201
        outage(True)
        try:
            assert twilio_post(client, "/webhooks/twilio/voice",
                               twilio_call("CA" + "5" * 32, leased)).status_code == 200
        finally:
            outage(False)
        after = scrape(client)

    assert moved(before, after, "dni_webhooks_total", provider="twilio", result="stored") == 4
    assert moved(before, after, "dni_webhooks_total", provider="twilio", result="duplicate") == 1
    assert moved(before, after, "dni_webhooks_total", provider="twilio",
                 result="bad_signature") == 1
    assert moved(before, after, "dni_webhooks_total", provider="twilio", result="queued") == 1
    for method, count in (("session", 1), ("fallback", 1), ("static", 2), ("unattributed", 1)):
        assert moved(before, after, "dni_call_matches_total", method=method) == count, method


def test_telnyx_outcomes_are_counted(make_app):
    app = make_app(DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)
    client = app.test_client()
    before = scrape(client)
    event = telnyx_event("call.initiated", "ev-1", "2026-01-05T15:00:00Z")
    assert telnyx_post(client, event).status_code == 204
    assert telnyx_post(client, event).status_code == 204
    assert telnyx_post(client, event, key=b"\x01" * 32).status_code == 403
    after = scrape(client)
    for result in ("stored", "duplicate", "bad_signature"):
        assert moved(before, after, "dni_webhooks_total", provider="telnyx", result=result) == 1


def test_latency_is_labelled_by_endpoint_and_status_class(client):
    before = scrape(client)
    client.get("/healthz")
    client.get("/no/such/page/12345")
    after = scrape(client)
    assert moved(before, after, "dni_request_duration_seconds_count",
                 endpoint="health.healthz", status="2xx") == 1
    assert moved(before, after, "dni_request_duration_seconds_count",
                 endpoint="unmatched", status="4xx") == 1
    assert not any("12345" in str(labels) for _, labels in after)


def test_latency_counts_each_request_under_its_labels(client):
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.get("/no/such/page")
    assert client.post("/healthz").status_code == 405  # no endpoint either
    after = scrape(client)
    assert moved(before, after, "dni_request_duration_seconds_count",
                 endpoint="health.healthz", status="2xx") == 3
    assert moved(before, after, "dni_request_duration_seconds_count",
                 endpoint="unmatched", status="4xx") == 2


def test_a_request_closes_the_sql_session_it_opened(app, admin):
    opened = []

    def note(_sender, **_extra):
        opened.append(db.session.registry.has())

    with request_finished.connected_to(note, app):
        admin.get("/v1/sites")  # the token is checked through db.session
    assert opened == [True]
    assert db.session.registry.registry == {}, "the request's session was not removed"


def test_outbox_depth_by_status_and_the_delivery_hook(app, client, admin):
    from attribution.conversions.models import ConversionDelivery, ConversionDestination
    from attribution.models import Call

    site = make_site(admin)
    assert admin.post("/v1/calls", json={"call_id": "c-1", "from": "+14158675309",
                                         "to": "+16505550177",
                                         "started_at": "2026-01-05T15:00:00Z"}).status_code == 201
    with app.app_context():
        call = db.session.query(Call).one()
        for kind, status in (("google", "pending"), ("meta", "failed"), ("ga4", "failed")):
            destination = ConversionDestination(site_id=site["id"], name=kind, kind=kind)
            db.session.add(destination)
            db.session.flush()
            db.session.add(ConversionDelivery(call_id=call.id, destination_id=destination.id,
                                              key=f"k-{kind}", name="call", status=status))
        db.session.commit()
    before = scrape(client)
    metrics.observe_delivery("google", "sent")
    after = scrape(client)
    assert value(after, "dni_outbox_depth", status="pending") == 1
    assert value(after, "dni_outbox_depth", status="failed") == 2
    assert moved(before, after, "dni_outbox_deliveries_total", destination="google",
                 status="sent") == 1


# -- who may read /metrics ------------------------------------------------------------


def test_metrics_are_never_cors_exposed(client):
    response = client.get("/metrics", headers={"Origin": "https://evil.example",
                                               "Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options("/metrics", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_a_metrics_token_is_required_when_set(make_app):
    client = make_app(DNI_METRICS_TOKEN=METRICS_TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "unauthorized"
    assert scrape(client, Authorization=f"Bearer {METRICS_TOKEN}")


def test_observability_settings_are_parsed_strictly():
    assert load_settings({"DNI_LOG_FORMAT": " JSON "}).log_format == "json"
    assert load_settings({}).log_format == "text"
    with pytest.raises(ConfigError, match="DNI_LOG_FORMAT"):
        load_settings({"DNI_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="DNI_METRICS_TOKEN"):
        load_settings({"DNI_METRICS_TOKEN": "short"})


# -- /healthz -------------------------------------------------------------------------


def test_healthz_reports_both_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    for name in ("redis", "sql"):
        check = response.json["checks"][name]
        assert check["status"] == "ok" and check["error"] is None and check["latency_ms"] >= 0


def test_healthz_with_redis_killed_is_503_naming_redis(make_app, tmp_path):
    port = free_port()
    proc = start_redis(port, tmp_path)
    try:
        client = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0").test_client()
        assert client.get("/healthz").status_code == 200
        proc.kill()
        proc.wait(10)
        response = client.get("/healthz")
        assert response.status_code == 503 and response.json["status"] == "down"
        redis_check, sql_check = response.json["checks"]["redis"], response.json["checks"]["sql"]
        assert redis_check["status"] == "down" and "Connection" in redis_check["error"]
        assert sql_check["status"] == "ok"
    finally:
        proc.kill()
        proc.wait(10)


class SilentServer:
    """Accepts TCP connections and never answers: a hung server, not a dead one."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def test_healthz_with_redis_hanging_says_so_quickly(make_app):
    silent = SilentServer()
    try:
        response = make_app(REDIS_URL=f"redis://127.0.0.1:{silent.port}/0").test_client() \
            .get("/healthz")
        assert response.status_code == 503
        check = response.json["checks"]["redis"]
        assert check["status"] == "down" and "Timeout" in check["error"]
        assert response.json["checks"]["sql"]["status"] == "ok"
    finally:
        silent.close()


def test_healthz_with_sql_down_and_back(make_app, database_url):
    with sql_outage_app(make_app, database_url) as (app, outage):
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        outage(True)
        try:
            response = client.get("/healthz")
            assert response.status_code == 503
            assert response.json["checks"]["sql"]["status"] == "down"
            assert response.json["checks"]["sql"]["error"]
            assert response.json["checks"]["redis"]["status"] == "ok"
        finally:
            outage(False)
        # Back at the next probe, or one soon after: on a loaded machine a check can miss
        # its 0.8 s deadline (a 503 that says so, then "not finished" while it is stuck),
        # and the load balancer probes again.
        answers = []
        for _ in range(5):
            answers.append(client.get("/healthz"))
            if answers[-1].status_code == 200:
                break
            time.sleep(0.2)
        assert answers[-1].status_code == 200, [a.json for a in answers]
        for slow in answers[:-1]:
            errors = [c["error"] for c in slow.json["checks"].values() if c["error"]]
            assert errors and all("no answer within" in e or "not finished" in e
                                  for e in errors), slow.json


def test_healthz_with_sql_unreachable_or_hanging(make_app):
    closed = free_port()
    refused = make_app(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/x").test_client()
    response = refused.get("/healthz")
    assert response.status_code == 503 and "refused" in response.json["checks"]["sql"]["error"]

    silent = SilentServer()
    try:
        hung = make_app(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{silent.port}/x")
        client = hung.test_client()
        first = client.get("/healthz").json["checks"]["sql"]
        assert first == {"status": "down", "latency_ms": None, "error": "no answer within 800 ms"}
        # The stuck check is not piled on: the next probe says so at once.
        again = client.get("/healthz").json["checks"]["sql"]
        assert again["status"] == "down" and "previous check" in again["error"]
    finally:
        silent.close()


# -- request ids and JSON logs ----------------------------------------------------------


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_request_id_round_trip_and_json_log_lines(make_app, capsys):
    admin = AdminClient(make_app().test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    make_pool(admin, site)
    app = make_app(DNI_LOG_FORMAT="json", REDIS_URL="redis://127.0.0.1:1/0")  # the last app's
    capsys.readouterr()                                                      # format applies

    response = app.test_client().post(
        "/v1/sessions", json={"site": site["key"], "url": "https://x.example/"},
        headers={"X-Request-Id": "req-42.abc", "User-Agent": "Mozilla/5.0 Chrome/124"})
    assert response.headers["X-Request-Id"] == "req-42.abc"
    assert response.json["numbers"][0]["reason"] == "unavailable"
    lines = [line for line in json_lines(capsys.readouterr().err)
             if line.get("request_id") == "req-42.abc"]
    # The warning logged deep inside the request carries the id; the snippet API's
    # successes are logged at DEBUG only (the hottest path), so no INFO access line.
    assert any(line["logger"] == "pools.availability" for line in lines)
    assert not any(line["logger"] == "dni_server.requests" for line in lines)

    response = app.test_client().get("/healthz", headers={"X-Request-Id": "req-43"})
    assert response.status_code == 503  # Redis is unreachable on port 1
    lines = [line for line in json_lines(capsys.readouterr().err)
             if line.get("request_id") == "req-43"]
    access = next(line for line in lines if line["logger"] == "dni_server.requests")
    assert (access["method"], access["path"], access["status"]) == ("GET", "/healthz", 503)
    assert access["duration_ms"] >= 0 and access["level"] == "INFO" and access["time"]


@pytest.mark.parametrize("given", ["has space", "<script>alert(1)</script>", "x" * 129, "",
                                   "-starts-with-dash", "id;rm -rf"])
def test_unsafe_request_ids_are_replaced(client, given):
    response = client.get("/healthz", headers={"X-Request-Id": given})
    echoed = response.headers["X-Request-Id"]
    assert echoed != given and len(echoed) == 32 and echoed.isalnum()


def test_new_request_ids_are_fresh_hex(client):
    ids = {client.get("/healthz").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_text_logs_carry_the_request_id_too(make_app, capsys):
    client = make_app(DNI_LOG_FORMAT="text").test_client()
    capsys.readouterr()
    client.get("/healthz", headers={"X-Request-Id": "text-id-1"})
    assert any("[text-id-1] GET /healthz 200" in line
               for line in capsys.readouterr().err.splitlines())


# -- a real gunicorn with two workers ----------------------------------------------------


@pytest.mark.slow
def test_gunicorn_workers_share_their_counts_and_log_json(make_app, database_url, tmp_path):
    make_app()  # only for its clean-up: it empties the tables afterwards
    redis_port, port = free_port(), free_port()
    redis_proc = start_redis(redis_port, tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROMETHEUS_MULTIPROC_DIR", "DNI_LOG_FORMAT", "DNI_ACCESS_LOG")}
    env.update(DATABASE_URL=database_url, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               DNI_ADMIN_TOKEN=ADMIN_TOKEN, DNI_SECRET_KEY="test-secret-key-0123456789",
               DNI_METRICS_TOKEN=METRICS_TOKEN,
               DNI_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2", DNI_WORKER="false",
               DNI_SESSION_RATE="0", DNI_REDIS_TIMEOUT_MS="2000", TMPDIR=str(scratch),
               DNI_LOG_LEVEL="debug",  # the snippet API's successes are logged at DEBUG
               DNI_INSTANCE_PATH=str(tmp_path / "instance"))
    stderr = open(tmp_path / "gunicorn.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
        env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server)
        [metrics_dir] = [p for p in scratch.iterdir() if p.name.startswith("dni-metrics-")]
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        site = requests.post(f"{base}/v1/sites", json={"name": "G"}, headers=auth,
                             timeout=30).json()
        pool = requests.post(f"{base}/v1/pools", headers=auth, timeout=30, json={
            "site": site["key"], "name": "P", "target": "+18005550100",
            "destination": "+12125550199", "numbers": numbers(5)}).json()

        def start_session(n: int) -> int:
            return requests.post(f"{base}/v1/sessions", timeout=30,
                                 json={"site": site["key"], "url": "https://x.example/"},
                                 headers={"User-Agent": "Mozilla/5.0 Chrome/124",
                                          "X-Request-Id": f"gunicorn-{n}"}).status_code

        # Both workers must take part. Which one accepts a connection is the kernel's choice
        # (a worker already warm can take them all), so send batches until both have.
        sent, served_by = 0, set()
        with ThreadPoolExecutor(4) as threads:
            while len(served_by) < 2 and sent < 400:
                assert list(threads.map(start_session, range(sent, sent + 40))) == [200] * 40
                sent += 40
                served_by = {line["process"] for line in read_json_log(stderr)
                             if str(line.get("request_id", "")).startswith("gunicorn-")}
        assert len(served_by) == 2, "both workers should have served sessions"

        # Kill one worker: its counts stay in the shared directory, a new one replaces it.
        os.kill(served_by.pop(), signal.SIGKILL)
        wait_until_up(base, server)
        for _ in range(4):  # whichever worker answers, the totals are the same
            samples = parse(requests.get(f"{base}/metrics", timeout=30, headers={
                "Authorization": f"Bearer {METRICS_TOKEN}"}).text)
            assert value(samples, "dni_request_duration_seconds_count",
                         endpoint="sessions.create_session", status="2xx") == sent
            answered = value(samples, "dni_leases_total") + sum(
                value(samples, "dni_fallbacks_total", reason=r) for r in metrics.FALLBACK_REASONS)
            assert answered == sent
            assert value(samples, "dni_pool_numbers", pool_id=str(pool["id"]),
                         site_id=str(site["id"])) == 5
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        redis_proc.kill()
        redis_proc.wait(10)
    assert not metrics_dir.exists(), "the per-instance metrics directory is removed at exit"
    stderr.seek(0)
    text = stderr.read()
    stderr.close()
    assert all(line.startswith("{") for line in text.splitlines() if line.strip()), text[-2000:]
    loggers = {line["logger"] for line in json_lines(text)}
    assert {"gunicorn.error", "dni_server.requests"} <= loggers


def read_json_log(stream) -> list[dict]:
    stream.flush()
    with open(stream.name) as fh:
        return json_lines(fh.read())



def test_a_path_with_a_newline_cannot_forge_a_text_log_line(make_app, capsys):
    client = make_app(DNI_LOG_FORMAT="text").test_client()
    capsys.readouterr()
    client.get("/x%0A2026-01-01 00:00:00 INFO forged [-] hello", headers={"X-Request-Id": "nl-1"})
    [line] = [line for line in capsys.readouterr().err.splitlines() if "forged" in line]
    assert "[nl-1] GET '/x\\n2026-01-01" in line
