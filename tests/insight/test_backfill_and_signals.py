"""``dni insight backfill`` (recordings kept before analysis ran) and the plain functions
the fraud signals read (``attribution.insight.signals``). The analysis is stubbed: what is
checked is which calls are analysed, from which bytes, and what is written back."""

from __future__ import annotations

import datetime as dt

import pytest

import attribution.insight.jobs as jobs_module
from attribution.insight import signals
from attribution.insight.jobs import recording_store
from attribution.models import Call
from factories import AdminClient, make_pool, make_site, numbers


def heard(caller=25.0, agent=20.0) -> dict:
    return {"status": "ok", "talk_seconds": {"caller": caller, "agent": agent}, "keywords": [],
            "tags": [], "disposition": None, "one_sided": False, "voicemail": False,
            "fraud_signals": []}


@pytest.fixture
def kept(make_app, tmp_path):
    """Four calls of a site whose pool needs 20 s from the caller: a kept recording never
    analysed, one analysed, one being fetched by a worker, and one with no recording."""
    app = make_app(DNI_RECORDINGS_DIR=str(tmp_path / "recordings"))
    admin = AdminClient(app.test_client(), "test-admin-token-0123456789abcdef")
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(2), revenue="30.00",
                     qualification={"caller_talk_seconds": 20})
    store = recording_store(app.extensions["dni"].settings, app.instance_path)
    ids = {}
    with app.extensions["dni"].session_factory() as db:
        for name, status, insight in (("old", "fetched", None), ("done", "fetched", heard(5, 5)),
                                      ("busy", "fetching", None), ("none", None, None)):
            call = Call(provider="api", provider_call_id=name, from_number="+14158675309",
                        to_number="+16505550101", started_at=dt.datetime.now(dt.UTC),
                        status="completed", duration=60, site_id=site["id"], pool_id=pool["id"],
                        recording_status=status, insight=insight)
            db.add(call)
            db.flush()
            if status is not None:
                call.recording_path = f"site-{site['id']}/call-{call.id}.wav"
                store.put(call.recording_path, f"RIFF-{name}".encode())
            ids[name] = call.id
        db.commit()
    return app, site, ids


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["dni", "insight", "backfill", *args])


def call_of(app, call_id: int) -> Call:
    with app.extensions["dni"].session_factory() as db:
        call = db.get(Call, call_id)
        db.expunge(call)
        return call


def test_backfill_analyses_kept_recordings_without_insight(kept, monkeypatch):
    app, site, ids = kept
    heard_bytes = []

    def analyse(wav, keywords, **kw):
        heard_bytes.append(wav)
        return heard()

    monkeypatch.setattr(jobs_module, "analyse", analyse)
    dry = cli(app, "--dry-run")
    assert dry.exit_code == 0 and dry.output.strip() == "1 calls: 1 to analyse"
    assert heard_bytes == []

    done = cli(app)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [f"call {ids['old']}: fetched", "1 calls: 1 fetched"]
    assert heard_bytes == [b"RIFF-old"]  # read from the store, never fetched again
    old = call_of(app, ids["old"])
    assert old.insight["talk_seconds"]["caller"] == 25.0 and old.recording_claim is None
    assert old.qualified and old.qualification_failures == []  # qualified again, as the worker does
    assert call_of(app, ids["done"]).insight["talk_seconds"]["caller"] == 5  # left alone
    assert call_of(app, ids["busy"]).recording_status == "fetching"  # a worker's: left alone
    assert cli(app).output.strip() == "no kept recording needs analysis"

    again = cli(app, "--reanalyse", "--site", site["key"])
    assert again.output.splitlines()[-1] == "2 calls: 2 fetched"
    assert sorted(heard_bytes) == [b"RIFF-done", b"RIFF-old", b"RIFF-old"]
    assert cli(app, "--reanalyse", "--limit", "1").output.splitlines()[-1] == "1 calls: 1 fetched"


def test_backfill_refuses_an_unknown_site(kept):
    app, _, _ = kept
    result = cli(app, "--site", "nope")
    assert result.exit_code == 2 and "no site 'nope'" in result.output


def test_signals_say_unknown_until_analysed():
    assert signals.one_sided(None) is None and signals.voicemail(None) is None
    assert signals.one_sided({"status": "unreadable"}) is None
    assert signals.fraud_signals(None) == [] and signals.talk_share(None) is None
    parked = heard(30.0, 0.0) | {"one_sided": True, "fraud_signals": ["one_sided", "script"]}
    assert signals.one_sided(parked) is True and signals.voicemail(parked) is False
    assert signals.fraud_signals(parked) == ["one_sided", "script"]
    assert signals.talk_share(parked) == 1.0
    machine = heard(2.0, 6.0) | {"voicemail": True}
    assert signals.voicemail(machine) is True and signals.talk_share(machine) == 0.25
    mono = heard(None, None) | {"one_sided": None}
    assert signals.one_sided(mono) is None and signals.talk_share(mono) is None
    assert signals.talk_share(heard(0.0, 0.0)) is None
