"""Money of routed calls beyond the log: ad-platform conversion rules that fire on a buyer's
conversion (end to end through Twilio's webhooks, into the outbox), and what a disposition
overrides."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from attribution.calls import requalify
from attribution.conversions.models import ConversionDelivery, ConversionDestination
from attribution.models import Call
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    twilio_call,
    twilio_post,
)
from routing.models import CallRouting

CALLER = "+14155550100"


@pytest.fixture
def network(make_app):
    """A pool routed to one buyer (converts after 60 s of talk), and a conversion rule that
    fires on buyer conversions only, whatever the publisher's qualification says."""
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    buyer = admin.post("/v1/buyers", json={
        "name": "A", "timezone": "America/Chicago", "targets": [{"number": "+12125550101"}],
        "conversion": {"min_duration": 60}, "revenue": "30.00"}).get_json()["id"]
    plan = admin.post("/v1/routing-plans", json={
        "name": "Plan", "tiers": [{"buyers": [buyer]}],
        "fallback": {"message": "Nobody is free."}}).get_json()["id"]
    site = make_site(admin)
    # The publisher's rules would never qualify these calls: only the buyer's count.
    make_pool(admin, site, numbers=numbers(1), routing_plan=plan,
              qualification={"min_duration": 3600})
    with app.app_context():
        dest = ConversionDestination(site_id=site["id"], name="ads", kind="google",
                                     config={"customer_id": "1234567890"})
        db.session.add(dest)
        db.session.commit()
        dest_id = dest.id
    response = admin.post("/v1/conversions/rules", json={
        "site": site["key"], "qualified_only": False, "buyer_converted_only": True,
        "actions": [{"destination": dest_id, "name": "Sold call"}]})
    assert response.status_code == 201, response.get_json()
    return {"app": app, "admin": admin, "client": app.test_client(), "to": numbers(1)[0],
            "buyer": buyer, "rule": response.get_json()["id"]}


def routed_call(world, sid: str, talk: int) -> None:
    """A call offered to the buyer, who answers and talks ``talk`` seconds; then the
    caller's leg ends."""
    def post(path, **params):
        response = twilio_post(world["client"], path,
                               twilio_call(sid, world["to"], CALLER) | params)
        assert response.status_code == 200, response.get_data(as_text=True)

    post("/webhooks/twilio/voice")
    post(f"/webhooks/twilio/route/1/whisper/{world['buyer']}", CallSid=f"{sid}-leg",
         ParentCallSid=sid)
    post("/webhooks/twilio/route/1/dial", DialCallStatus="completed",
         DialCallDuration=str(talk), DialCallSid=f"{sid}-leg", CallStatus="in-progress")


def outbox(app, sid: str) -> list[ConversionDelivery]:
    with app.app_context():
        call_id = db.session.scalar(select(Call.id).where(Call.provider_call_id == sid))
        return list(db.session.scalars(select(ConversionDelivery).where(
            ConversionDelivery.call_id == call_id)))


def test_a_buyer_conversion_queues_one_ad_conversion_and_a_short_call_none(network):
    routed_call(network, "CA-sold", talk=75)
    routed_call(network, "CA-short", talk=20)
    with network["app"].app_context():
        logs = {r.provider_call_id: r for r in db.session.scalars(select(CallRouting))}
        assert logs["CA-sold"].converted and not logs["CA-short"].converted
        # The publisher's rules did not qualify either call: the buyer's conversion did.
        assert not db.session.scalar(select(Call.qualified).where(
            Call.provider_call_id == "CA-sold"))

    sold = outbox(network["app"], "CA-sold")
    assert [(r.name, r.status, r.wanted) for r in sold] == [("Sold call", "pending", True)]
    assert outbox(network["app"], "CA-short") == []

    # The caller's leg ends (Twilio's status callback): requalified, still exactly one row.
    for sid in ("CA-sold", "CA-short"):
        response = twilio_post(network["client"], "/webhooks/twilio/status", twilio_call(
            sid, network["to"], CALLER, CallStatus="completed", CallDuration="90"))
        assert response.status_code in (200, 204), response.get_data(as_text=True)
    assert [(r.status, r.wanted) for r in outbox(network["app"], "CA-sold")] == [
        ("pending", True)]
    assert outbox(network["app"], "CA-short") == []


def test_a_disposition_overrides_the_payout_and_an_excluding_rule_not_the_buyer_revenue(
        network):
    """What overrides what: ``spam`` takes the publisher's payout (qualification) and, where
    the rule excludes it, the ad conversion; the buyer's revenue is the buyer's terms."""
    response = network["admin"].patch(f"/v1/conversions/rules/{network['rule']}",
                                      json={"dispositions_excluded": ["spam"]})
    assert response.status_code == 200, response.get_json()
    routed_call(network, "CA-spam", talk=75)
    [row] = outbox(network["app"], "CA-spam")
    assert (row.status, row.wanted) == ("pending", True)
    with network["app"].app_context():
        # As ``POST /v1/calls/<id>/disposition`` does: set it, requalify, commit.
        call = db.session.scalar(select(Call).where(Call.provider_call_id == "CA-spam"))
        call.disposition = "spam"
        requalify(db.session, call)
        db.session.commit()
        assert call.qualified is False and call.payout == 0
        log = db.session.scalar(select(CallRouting).where(
            CallRouting.provider_call_id == "CA-spam"))
        assert log.converted and str(log.revenue) == "30.00"
    [row] = outbox(network["app"], "CA-spam")
    assert (row.status, row.wanted) == ("skipped", False)


def test_a_buyer_rule_counts_only_buyer_conversions_and_keeps_its_other_conditions():
    from attribution.conversions.models import ConversionRule
    from attribution.conversions.rules import counts

    class Ringing:
        status, disposition, qualified, duration = "in-progress", None, False, None

    rule = ConversionRule(qualified_only=False, buyer_converted_only=True,
                          dispositions_included=[], dispositions_excluded=["spam"])
    assert counts(rule, Ringing(), buyer_converted=True)  # before the caller hangs up
    assert not counts(rule, Ringing(), buyer_converted=False)
    Ringing.disposition = "spam"
    assert not counts(rule, Ringing(), buyer_converted=True)
    rule.qualified_only = True
    Ringing.disposition = None
    assert not counts(rule, Ringing(), buyer_converted=True)  # both must hold
    # An ordinary rule is as before: a call still ringing never counts.
    plain = ConversionRule(qualified_only=False, buyer_converted_only=False,
                           dispositions_included=[], dispositions_excluded=[])
    assert not counts(plain, Ringing(), buyer_converted=True)
