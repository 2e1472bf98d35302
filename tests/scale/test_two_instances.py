"""Two gunicorn instances (2 sync workers each) on one Redis and one SQL database, raced.

Behind a load balancer any request may reach any instance: sessions, heartbeats and
carrier webhooks are spread over both here, over real HTTP, and the invariants must hold:
no number held twice, sticky renewals, and one call row per CallSid however often and
wherever it is delivered.
"""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa
from scale_servers import root_conftest, start_gunicorn, wait_ready
from twilio.request_validator import RequestValidator

from dni_server import create_app
from factories import ADMIN_TOKEN, CHROME_UA, TWILIO_TOKEN, numbers, record
from pool_helpers import holders

PUBLIC_URL = "https://dni.example"  # what the load balancer is called; carriers sign it
POOL_SIZE = 4


class Fleet:
    """Both instances, a pool to race for, and ways to reach them."""

    def __init__(self, instances, app, site, pool):
        self.instances = instances
        self.app = app  # an in-process app on the same Redis and SQL: the worker, the checks
        self.site = site
        self.pool = pool
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def url(self, i: int, path: str) -> str:
        return self.instances[i % len(self.instances)].url + path

    def new_session(self, i: int) -> dict:
        # A distinct client address per visitor, as the load balancer reports it.
        response = self.http.post(
            self.url(i, "/v1/sessions"), timeout=30,
            data=json.dumps({"site": self.site["key"], "url": f"https://shop.example/?v={i}"}),
            headers={"Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME_UA,
                     "X-Forwarded-For": f"198.{18 + i // 250}.{i % 250}.9"})
        assert response.status_code == 200, response.text
        return response.json()

    def heartbeat(self, i: int, session_id: str) -> dict:
        response = self.http.post(self.url(i, f"/v1/sessions/{session_id}/heartbeat"),
                                  json={"site": self.site["key"]}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def twilio(self, i: int, path: str, params: dict) -> requests.Response:
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)
        return self.http.post(self.url(i, path), data=params, timeout=30,
                              headers={"X-Twilio-Signature": signature})

    def call_rows(self) -> dict[str, int]:
        """CallSid -> how many call rows SQL holds for it."""
        record(self.app)  # the worker's pass stores any event a busy database sent to the inbox
        engine = sa.create_engine(self.app.config["SQLALCHEMY_DATABASE_URI"])
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT provider_call_id, count(*) FROM calls GROUP BY provider_call_id")).all()
        engine.dispose()
        return dict(rows)


@pytest.fixture(scope="module")
def fleet(request, private_redis, database_url, tmp_path_factory):
    root = root_conftest(request.config)
    private_redis.client().flushall()
    redis_url = f"redis://127.0.0.1:{private_redis.port}/0"
    env = root.app_config(database_url, redis_url, DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                          DNI_PUBLIC_URL=PUBLIC_URL, DNI_PROXY_HOPS=1,
                          DNI_REDIS_TIMEOUT_MS=2000, DNI_LOG_LEVEL="warning")
    folder = tmp_path_factory.mktemp("fleet")
    # Started together: each instance boots (imports, connects) while the other does.
    instances = [start_gunicorn(env, str(folder / f"instance{i}")) for i in range(2)]
    app = None
    try:
        for instance in instances:
            wait_ready(instance)
        app = create_app(env, instance_path=str(folder / "checks"))
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        site = requests.post(instances[0].url + "/v1/sites", json={"name": "Fleet"},
                             headers=admin, timeout=30).json()
        pool = requests.post(instances[1].url + "/v1/pools", headers=admin, timeout=30, json={
            "site": site["key"], "name": "Small", "target": "+18005550100",
            "fallback": "+18005550177", "destination": "+12125550199",
            "numbers": numbers(POOL_SIZE)}).json()
        yield Fleet(instances, app, site, pool)
    finally:
        for instance in instances:
            instance.stop()
        if app is not None:
            with app.app_context():
                from dni_server.extensions import db

                db.engine.dispose()
            app.extensions["dni"].redis.close()
            app.extensions["dni"].redis_admin.close()
        root.empty_tables(database_url)
        private_redis.client().flushall()


def test_sessions_raced_over_both_instances_never_share_a_number(fleet):
    visitors = 40
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(fleet.new_session, range(visitors)))
    entries = [a["numbers"][0] for a in answers]
    leased = [(a["session_id"], e["number"]) for a, e in zip(answers, entries, strict=True)
              if not e["fallback"]]
    assert sorted(n for _, n in leased) == numbers(POOL_SIZE)  # each number once, all used
    refused = [e for e in entries if e["fallback"]]
    assert len(refused) == visitors - POOL_SIZE
    assert {(e["number"], e["reason"]) for e in refused} == {("+18005550177", "pool_exhausted")}
    assert holders(fleet.app.extensions["dni"].pools, fleet.pool["id"]) == \
        {n: s for s, n in leased}

    # Each holder's heartbeats alternate between the instances and keep the same number.
    def beats(item) -> list[str]:
        k, (session_id, number) = item
        got = [fleet.heartbeat(k + step, session_id)["numbers"][0] for step in range(4)]
        return [(e["number"], e["fallback"]) for e in got], number

    with ThreadPoolExecutor(POOL_SIZE) as pool:
        for got, number in pool.map(beats, enumerate(leased)):
            assert got == [(number, False)] * 4


def test_the_same_webhook_delivered_to_both_at_once_is_one_call(fleet):
    number = numbers(1)[0]
    sids = [f"CA{k:032x}" for k in range(6)]
    deliveries = [(i, sid) for sid in sids for i in range(4)]  # each sid: twice per instance

    def deliver(item):
        i, sid = item
        return fleet.twilio(i, "/webhooks/twilio/voice", {
            "CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+14158675309", "To": number,
            "CallStatus": "ringing", "ApiVersion": "2010-04-01", "Direction": "inbound"})

    with ThreadPoolExecutor(len(deliveries)) as pool:
        responses = list(pool.map(deliver, deliveries))
    # Every delivery is forwarded to the destination, duplicate or not.
    for response in responses:
        assert response.status_code == 200, response.text
        assert ET.fromstring(response.content).find("Dial/Number").text == "+12125550199"
    rows = fleet.call_rows()
    assert {sid: rows.get(sid) for sid in sids} == {sid: 1 for sid in sids}


def test_many_distinct_webhooks_spread_over_both_give_one_call_each(fleet):
    sids = [f"CA{0xfeed0000 + k:032x}" for k in range(40)]
    number = itertools.cycle(numbers(POOL_SIZE))

    def deliver(item):
        i, sid = item
        return fleet.twilio(i, "/webhooks/twilio/voice", {
            "CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+14158675309",
            "To": next(number), "CallStatus": "ringing", "ApiVersion": "2010-04-01",
            "Direction": "inbound"})

    with ThreadPoolExecutor(12) as pool:
        statuses = [r.status_code for r in pool.map(deliver, enumerate(sids))]
    assert statuses == [200] * len(sids)
    rows = fleet.call_rows()
    assert {sid: rows.get(sid) for sid in sids} == {sid: 1 for sid in sids}
