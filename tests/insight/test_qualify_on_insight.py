"""Qualification rules on a recording's insight: talk time per side, keywords heard or not.

A call whose rules need insight waits (``insight_pending``) and is decided by the worker's
step when the analysis is written, through the same requalification as a disposition:
revenue, payout and the conversion outbox move with it. The analysis itself is stubbed
here (the audio tests in this folder cover it): the rules, the worker's path and the
outbox are what is checked.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

import attribution.insight.jobs as jobs_module
from attribution.calls import requalify
from attribution.conversions.models import ConversionDelivery, ConversionDestination
from attribution.insight.jobs import InsightJobs, apply_insight
from attribution.models import Call
from attribution.qualification import CallFacts, evaluate, needs_insight, validate_rules
from factories import AdminClient, make_pool, make_site, numbers

RULES = {"caller_talk_seconds": 20, "not_heard": ["Wrong number!"]}
T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


def insight(caller: float = 30.0, agent: float = 25.0, words=(), tags=(), status="ok") -> dict:
    """An analysis as ``attribution.insight.analyse`` writes it (the fields the rules read)."""
    return {"status": status, "talk_seconds": {"caller": caller, "agent": agent},
            "keywords": [{"word": w, "side": "caller", "at_seconds": 3.0, "score": 0.8}
                         for w in words], "tags": list(tags), "disposition": None}


def facts(**overrides) -> CallFacts:
    base = dict(duration=90, started_at=T0, caller_country="US", caller_region="CA",
                area_code="415", previous_call_at=None)
    return CallFacts(**(base | overrides))


# -- the rules (pure) ------------------------------------------------------------------------


def test_talk_time_and_keyword_rules_decide_on_the_insight():
    rules = validate_rules({"caller_talk_seconds": 20, "agent_talk_seconds": 5,
                            "heard": ["appointment", "tag:booking"], "not_heard": ["wrong number"]})
    ok = insight(words=["appointment"], tags=["booking"])
    assert evaluate(rules, facts(insight=ok)) == (True, [])
    assert evaluate(rules, facts(insight=insight(caller=19.5, words=["appointment"],
                                                  tags=["booking"]))) \
        == (False, ["caller_talk_too_short"])
    assert evaluate(rules, facts(insight=insight(agent=1.0, words=["appointment"],
                                                  tags=["booking"])))[1] == ["agent_talk_too_short"]
    assert evaluate(rules, facts(insight=insight(words=["appointment"]))) \
        == (False, ["keyword_not_heard"])  # the tag is missing
    assert evaluate(rules, facts(insight=insight(words=["appointment", "wrong number"],
                                                  tags=["booking"]))) == (False, ["keyword_heard"])
    # Rules that do not look at insight never wait for it.
    assert not needs_insight({"min_duration": 30})
    assert evaluate({"min_duration": 30}, facts()) == (True, [])


def test_without_insight_the_call_waits_then_fails_for_good_when_none_can_come():
    assert evaluate(RULES, facts()) == (False, ["insight_pending"])
    assert evaluate(RULES, facts(recording_status="fetching")) == (False, ["insight_pending"])
    for gone in ("failed", "deleted"):
        assert evaluate(RULES, facts(recording_status=gone)) == (False, ["insight_unavailable"])
    unreadable = {"status": "unreadable", "error": "not a WAV"}
    assert evaluate(RULES, facts(insight=unreadable)) == (False, ["insight_unavailable"])
    # A mono recording cannot tell the sides apart.
    mono = insight() | {"talk_seconds": {"caller": None, "agent": None, "mixed": 40.0}}
    assert evaluate(RULES, facts(insight=mono)) == (False, ["talk_sides_unknown"])
    # A person's disposition still decides, insight or not.
    assert evaluate(RULES, facts(disposition="sale")) == (True, [])
    assert evaluate(RULES, facts(insight=insight(), disposition="spam"))[0] is False


@pytest.mark.parametrize("rules", [
    {"caller_talk_seconds": -1}, {"agent_talk_seconds": "20"}, {"heard": "appointment"},
    {"not_heard": ["!!!"]}, {"heard": ["tag:"]}, {"heard": ["x"] * 51},
])
def test_bad_insight_rules_are_refused(rules):
    with pytest.raises(ValueError):
        validate_rules(rules)


def test_the_api_checks_insight_rules(app):
    admin = AdminClient(app.test_client(), "test-admin-token-0123456789abcdef")
    site = make_site(admin)
    bad = admin.post("/v1/pools", json={
        "site": site["key"], "name": "Bad", "target": "+18005550100",
        "destination": "+12125550199", "numbers": numbers(1, start=150),
        "qualification": {"not_heard": "wrong number"}})
    assert bad.status_code == 422
    assert "not_heard" in str(bad.get_json()["error"])
    pool = make_pool(admin, site, qualification=RULES)
    assert pool["qualification"] == RULES


# -- the worker decides a waiting call ---------------------------------------------------------


class Carrier(BaseHTTPRequestHandler):
    """A Telnyx-like host of pre-signed recording links; ``/fail`` is always down."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        status, body = (503, b"later") if self.path.startswith("/fail") else (200, b"RIFF....WAVE")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def carrier():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Carrier)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def clinic(make_app, tmp_path):
    """An app, and a site whose pool needs 20 s from the caller and no "wrong number", with
    a conversion rule, so the outbox shows what requalification did."""
    app = make_app(DNI_RECORDINGS_DIR=str(tmp_path / "recordings"))
    admin = AdminClient(app.test_client(), "test-admin-token-0123456789abcdef")
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2), revenue="40.00", qualification=RULES)
    with app.extensions["dni"].session_factory() as db:
        dest = ConversionDestination(site_id=site["id"], name="probe", kind="probe",
                                     config={"base_url": "http://127.0.0.1:9"})
        db.add(dest)
        db.commit()
        dest_id = dest.id
    rule = admin.post("/v1/conversions/rules", json={
        "site": site["key"], "actions": [{"destination": dest_id, "name": "Qualified call"}]})
    assert rule.status_code == 201, rule.get_json()
    return app, site, pool


def add_call(app, site, pool, url: str, sid: str) -> int:
    """A finished Telnyx call to the pool with its recording announced, qualified as ingest
    would qualify it."""
    with app.extensions["dni"].session_factory() as db:
        call = Call(provider="telnyx", provider_call_id=sid, from_number="+14158675309",
                    to_number="+16505550101",
                    started_at=T0, status="completed", duration=90, site_id=site["id"],
                    pool_id=pool["id"], recording_url=url)
        db.add(call)
        db.flush()
        requalify(db, call)
        db.commit()
        return call.id


def state(app, call_id: int) -> tuple[Call, list[ConversionDelivery]]:
    with app.extensions["dni"].session_factory() as db:
        call = db.get(Call, call_id)
        db.expunge(call)
        rows = list(db.scalars(select(ConversionDelivery).where(ConversionDelivery.call_id == call_id)))
        return call, rows


def worker(app) -> InsightJobs:
    services = app.extensions["dni"]
    return InsightJobs.from_settings(services.session_factory, services.settings, app.instance_path)


def test_a_waiting_call_is_qualified_when_its_insight_arrives(clinic, carrier, monkeypatch):
    app, site, pool = clinic
    call_id = add_call(app, site, pool, carrier + "/rec-1.wav", "v3:pending-1")
    call, rows = state(app, call_id)
    assert (call.qualified, call.qualification_failures) == (False, ["insight_pending"])
    assert call.revenue == Decimal("0") and rows == []

    heard = insight(caller=24.0, words=["appointment"])
    monkeypatch.setattr(jobs_module, "analyse", lambda wav, keywords, **kw: heard)
    assert worker(app).run_once() == 1
    call, rows = state(app, call_id)
    assert call.recording_status == "fetched" and call.insight["talk_seconds"]["caller"] == 24.0
    assert (call.qualified, call.qualification_failures) == (True, [])
    assert call.revenue == Decimal("40.00")
    assert [(r.status, r.operation) for r in rows] == [("pending", "conversion")]

    # A second analysis that heard "wrong number" takes it back, outbox included.
    with app.extensions["dni"].session_factory() as db:
        apply_insight(db, db.get(Call, call_id), insight(caller=24.0, words=["wrong number"]))
        db.commit()
    call, rows = state(app, call_id)
    assert (call.qualified, call.qualification_failures) == (False, ["keyword_heard"])
    assert call.revenue == Decimal("0") and [r.status for r in rows] == ["skipped"]


def test_a_quiet_caller_stays_unqualified(clinic, carrier, monkeypatch):
    app, site, pool = clinic
    call_id = add_call(app, site, pool, carrier + "/rec-2.wav", "v3:quiet")
    monkeypatch.setattr(jobs_module, "analyse", lambda wav, keywords, **kw: insight(caller=8.0))
    assert worker(app).run_once() == 1
    call, rows = state(app, call_id)
    assert (call.qualified, call.qualification_failures) == (False, ["caller_talk_too_short"])
    assert rows == []


def test_a_recording_that_never_comes_decides_the_call(clinic, carrier):
    app, site, pool = clinic
    call_id = add_call(app, site, pool, carrier + "/fail/rec-3.wav", "v3:lost")
    jobs = worker(app)
    jobs.max_attempts = 1
    assert jobs.run_once() == 1
    call, rows = state(app, call_id)
    assert call.recording_status == "failed"
    assert (call.qualified, call.qualification_failures) == (False, ["insight_unavailable"])
    assert rows == []


def test_deleting_an_unanalysed_recording_decides_the_call(clinic, carrier):
    app, site, pool = clinic
    call_id = add_call(app, site, pool, carrier + "/rec-4.wav", "v3:deleted")
    admin = AdminClient(app.test_client(), "test-admin-token-0123456789abcdef")
    shown = admin.delete(f"/v1/calls/{call_id}/recording").get_json()
    assert shown["recording"]["status"] == "deleted"
    assert (shown["qualified"], shown["qualification_failures"]) == (False, ["insight_unavailable"])
    assert worker(app).run_once() == 0  # nothing left to fetch
