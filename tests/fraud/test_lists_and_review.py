"""The block list API, automatic entries from spam dispositions, the review queue, the
signals known after the call, and publisher isolation."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from attribution.conversions.rules import counts
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)

CALLER = "+13105550123"
DESTINATION = "+12125550199"
ACME, OTHER = numbers(2, start=181)


@pytest.fixture
def world(make_app):
    """One site enforcing the default policy, with a static number for each publisher."""
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    for number, publisher in ((ACME, "Acme"), (OTHER, "Other")):
        created = admin.post("/v1/static-numbers", json={
            "site": site["key"], "number": number, "destination": DESTINATION,
            "source": "radio", "medium": "offline", "publisher": publisher,
            "revenue": "40.00", "payout": "25.00", "qualification": {"min_duration": 60}})
        assert created.status_code == 201, created.get_json()
    assert admin.put(f"/v1/sites/{site['key']}/fraud-policy",
                     json={"settings": {}}).status_code == 200
    return SimpleNamespace(app=app, admin=admin, site=site)


def token(world, scope: str, publisher: str | None = None) -> AdminClient:
    response = world.admin.post("/v1/tokens", json={"name": scope, "scope": scope,
                                                    "publisher": publisher})
    assert response.status_code == 201, response.get_json()
    return AdminClient(world.app.test_client(), response.get_json()["token"])


def call(world, sid: str, to: str = ACME, caller: str = CALLER, **extra) -> str:
    response = twilio_post(world.app.test_client(), "/webhooks/twilio/voice",
                           twilio_call(sid, to, caller, **extra))
    assert response.status_code == 200
    return response.get_data(as_text=True)


def end(world, sid: str, seconds: int, to: str = ACME, caller: str = CALLER) -> None:
    params = twilio_call(sid, to, caller) | {"CallStatus": "completed",
                                             "CallDuration": str(seconds)}
    assert twilio_post(world.app.test_client(), "/webhooks/twilio/status",
                       params).status_code == 204


def fraud(client, sid: str):
    return client.get(f"/v1/calls/{sid}/fraud")


# -- the block list ----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"value": "415555"}, "value"), ({"value": "+1415x"}, "value"), ({}, "value"),
    ({"value": "+1415", "expires_at": "tomorrow"}, "expires_at"),
    ({"value": "+1415", "reason": "x" * 501}, "reason"),
])
def test_bad_entries_are_422_naming_the_field(world, body, field):
    response = world.admin.post("/v1/block-list", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_entries_are_added_listed_and_removed(world):
    assert world.admin.post("/v1/block-list", json={"value": "+1", "site": "nope"}
                            ).status_code == 404
    added = world.admin.post("/v1/block-list", json={
        "value": "+1 310 555", "reason": "call farm", "site": world.site["key"]}).get_json()
    assert (added["value"], added["kind"], added["site_id"], added["added_by"],
            added["source"]) == ("+1310555", "prefix", world.site["id"], "admin", "api")
    assert "<Reject" in call(world, "CA-1")
    listed = world.admin.get("/v1/block-list").get_json()["entries"]
    assert [e["id"] for e in listed] == [added["id"]]
    assert world.admin.delete(f"/v1/block-list/{added['id']}").status_code == 204
    assert world.admin.delete(f"/v1/block-list/{added['id']}").status_code == 404
    assert world.admin.delete("/v1/block-list/x").status_code == 404
    assert "<Dial" in call(world, "CA-2")  # the map was read again at once


def test_an_expired_entry_blocks_nobody(world):
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    assert world.admin.post("/v1/block-list", json={"value": CALLER, "expires_at": past}
                            ).status_code == 201
    assert "<Dial" in call(world, "CA-3")


def test_who_may_see_and_change_the_list(world):
    reader, acme = token(world, "read_only"), token(world, "publisher", "Acme")
    assert reader.get("/v1/block-list").status_code == 200
    assert reader.post("/v1/block-list", json={"value": "+1900"}).status_code == 403
    assert acme.get("/v1/block-list").status_code == 403  # other publishers' callers
    assert acme.post("/v1/block-list", json={"value": "+1900"}).status_code == 403
    assert reader.delete("/v1/block-list/1").status_code == 403


def test_a_spam_disposition_lists_the_caller_with_an_audit(world):
    call(world, "CA-spam")
    response = world.admin.post("/v1/calls/CA-spam/disposition", json={"disposition": "spam"})
    assert response.status_code == 200
    entries = world.admin.get("/v1/block-list").get_json()["entries"]
    assert [(e["value"], e["source"], e["added_by"], e["site_id"]) for e in entries] == [
        (CALLER, "disposition", "disposition:admin", world.site["id"])]
    assert entries[0]["call_id"] == response.get_json()["id"] and entries[0]["created_at"]
    world.admin.post("/v1/calls/CA-spam/disposition", json={"disposition": "spam"})
    assert len(world.admin.get("/v1/block-list").get_json()["entries"]) == 1
    assert "<Reject" in call(world, "CA-spam-again")


# -- the review queue --------------------------------------------------------------------------


def test_a_held_call_is_reviewed(world):
    call(world, "CA-held", StirVerstat="TN-Validation-Failed-A")
    end(world, "CA-held", 120)
    state = fraud(world.admin, "CA-held").get_json()
    assert (state["review"]["state"], state["qualified"], state["payout"]) == (
        "pending", False, "0.00")
    queue = world.admin.get("/v1/calls?review=pending").get_json()["calls"]
    assert [c["call_id"] for c in queue] == ["CA-held"]
    assert world.admin.get("/v1/calls?review=maybe").status_code == 422

    approved = world.admin.post("/v1/calls/CA-held/review",
                                json={"decision": "approve", "reason": "known customer"})
    assert approved.status_code == 200, approved.get_json()
    body = approved.get_json()
    assert (body["qualified"], body["payout"], body["review"]["state"],
            body["review"]["by"], body["review"]["reason"]) == (
        True, "25.00", "approved", "admin", "known customer")
    assert world.admin.get("/v1/calls?review=pending").get_json()["calls"] == []

    rejected = world.admin.post("/v1/calls/CA-held/review", json={"decision": "reject"})
    assert (rejected.get_json()["qualified"], rejected.get_json()["payout"]) == (False, "0.00")
    detail = world.admin.get("/v1/calls/CA-held").get_json()
    assert "review_rejected" in detail["qualification_failures"]


def test_review_refusals(world):
    call(world, "CA-clean")
    assert world.admin.post("/v1/calls/CA-clean/review",
                            json={"decision": "approve"}).status_code == 422
    assert world.admin.post("/v1/calls/CA-clean/review",
                            json={"decision": "maybe"}).status_code == 422
    assert world.admin.post("/v1/calls/nope/review",
                            json={"decision": "approve"}).status_code == 404
    acme = token(world, "publisher", "Acme")
    assert acme.post("/v1/calls/CA-clean/review", json={"decision": "approve"}
                     ).status_code == 403


def test_talk_time_just_past_the_threshold_again_holds_the_call(world):
    hugger = "+13105550124"
    call(world, "CA-hug1", caller=hugger)
    end(world, "CA-hug1", 62, caller=hugger)
    first = fraud(world.admin, "CA-hug1").get_json()
    hug = next(s for s in first["signals"] if s["name"] == "threshold_hugging")
    assert hug == {"name": "threshold_hugging", "fired": True,
                   "value": {"duration": 62, "thresholds": [60], "seconds_past": 2}}
    # Once is chance (30 points, below flag): paid.
    assert (first["risk_score"], first["review"], first["qualified"]) == (30, None, True)

    call(world, "CA-hug2", caller=hugger)
    end(world, "CA-hug2", 61, caller=hugger)
    second = fraud(world.admin, "CA-hug2").get_json()
    assert second["contributions"] == [{"signal": "threshold_hugging", "points": 50}]
    assert (second["review"]["state"], second["qualified"]) == ("pending", False)

    call(world, "CA-long", caller="+13105550125")
    end(world, "CA-long", 95, caller="+13105550125")
    state = fraud(world.admin, "CA-long").get_json()
    assert (state["risk_score"], state["review"], state["qualified"]) == (0, None, True)


def test_a_held_call_converts_for_no_ad_platform_until_approved():
    rule = SimpleNamespace(buyer_converted_only=False, qualified_only=False, min_duration=0,
                           dispositions_excluded=[], dispositions_included=[])
    ended = dict(status="completed", disposition=None, qualified=True, duration=90)
    assert counts(rule, SimpleNamespace(**ended, review_state=None))
    assert counts(rule, SimpleNamespace(**ended, review_state="approved"))
    assert not counts(rule, SimpleNamespace(**ended, review_state="pending"))
    assert not counts(rule, SimpleNamespace(**ended, review_state="rejected"))


# -- publisher isolation -----------------------------------------------------------------------


def test_a_publisher_sees_its_own_calls_signals_never_anothers_history(world):
    call(world, "CA-other", to=OTHER, caller="+13105550126")
    call(world, "CA-acme", to=ACME, caller="+13105550126")
    acme, other = token(world, "publisher", "Acme"), token(world, "publisher", "Other")
    mine = fraud(acme, "CA-acme").get_json()
    cross = next(s for s in mine["signals"] if s["name"] == "cross_publisher")
    assert cross == {"name": "cross_publisher", "fired": True,
                     "value": {"other_publishers": 1, "days": 7}}
    assert "Other" not in str(mine) and "CA-other" not in str(mine)
    assert fraud(acme, "CA-other").status_code == 404
    assert fraud(other, "CA-acme").status_code == 404
    queue = acme.get("/v1/calls?review=pending").get_json()["calls"]
    assert {c["call_id"] for c in queue} <= {"CA-acme"}


def test_a_csv_import_reports_every_row(world):
    other = make_site(world.admin, name="Other site")
    csv_text = ("value,reason,expires_at,site\n"
                "+1900,premium,,\n"
                "'+1415555,farm (spreadsheet text),2030-01-01T00:00:00Z,\n"
                f"+13105550123,spam,,{other['key']}\n"
                "+1900,again,,\n"
                "310555,no plus,,\n"
                "+1212,,tomorrow,\n"
                f"+1646,,,nope\n")
    response = world.admin.post("/v1/block-list/import", data=csv_text,
                                headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["rows"], body["added"], body["errors"]) == (7, 3, 3)
    assert [(r["row"], r["status"]) for r in body["report"]] == [
        (2, "added"), (3, "added"), (4, "added"), (5, "duplicate"), (6, "error"),
        (7, "error"), (8, "error")]
    assert "unknown site" in body["report"][6]["error"]
    entries = {e["value"]: e for e in world.admin.get("/v1/block-list").get_json()["entries"]}
    assert entries["+1415555"]["expires_at"].startswith("2030-01-01")
    assert entries["+13105550123"]["site_id"] == other["id"]
    assert {e["source"] for e in entries.values()} == {"import"}
    # The other site's entry does not touch this site's calls; the prefix does.
    assert "<Dial" in call(world, "CA-imp1")
    assert "<Reject" in call(world, "CA-imp2", caller="+14155550100")


@pytest.mark.parametrize(("body", "kind", "status"), [
    ("reason\nx\n", "text/csv", 422), ("value,colour\n+1,red\n", "text/csv", 422),
    ("value\n+1900\n", "application/json", 415),
])
def test_a_bad_import_is_refused_whole(world, body, kind, status):
    response = world.admin.post("/v1/block-list/import", data=body,
                                headers={"Content-Type": kind})
    assert response.status_code == status
    assert world.admin.get("/v1/block-list").get_json()["entries"] == []
