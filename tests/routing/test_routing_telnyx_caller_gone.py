"""Routed Telnyx calls whose caller leaves while buyer legs are up (issue 15): the buyer
legs' ``call.hangup`` (source "caller", as for a leg the app hangs up itself) may come
before the caller's own, and must settle the offer as the caller's hang-up: nothing more
is dialled, said or transferred."""

from __future__ import annotations

import test_routing_telnyx as telnyx
from sqlalchemy import select

from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient
from routing.models import CallRouting

world = telnyx.world  # the fixture: an app on Telnyx, its commands kept in world["sent"]
event, meta = telnyx.event, telnyx.meta


def plan_on_the_number(world, tiers: list[dict], **fields) -> None:
    admin = AdminClient(world["app"].test_client(), ADMIN_TOKEN)
    plan = admin.post("/v1/routing-plans", json={"name": "P", "tiers": tiers,
                                                 "fallback": {}} | fields)
    assert plan.status_code == 201, plan.get_json()
    pool = admin.get("/v1/pools").get_json()["pools"][0]
    response = admin.patch(f"/v1/pools/{pool['id']}", json={"routing_plan": plan.get_json()["id"]})
    assert response.status_code == 200


def new_buyer(world, number: str, min_duration: int = 0) -> int:
    admin = AdminClient(world["app"].test_client(), ADMIN_TOKEN)
    return admin.post("/v1/buyers", json={
        "name": number, "timezone": "UTC", "targets": [{"number": number}],
        "conversion": {"min_duration": min_duration}, "revenue": "10.00"}).get_json()["id"]


def the_log(world) -> CallRouting:
    with world["app"].app_context():
        row = db.session.scalar(select(CallRouting))
        db.session.expunge(row)
        return row


def cancelled(world, event_id: str, control: str, dial: dict, cause="originator_cancel"):
    return event(world, "call.hangup", event_id, control=control, direction="outgoing",
                 state=dial["client_state"], hangup_cause=cause, hangup_source="caller")


def test_the_legs_cancelled_with_the_caller_settle_the_offer_as_the_caller_gone(world):
    c = new_buyer(world, "+12125550103")
    plan_on_the_number(world, [{"buyers": [world["b"], c], "mode": "simultaneous"}])
    [(_, body)] = event(world, "call.initiated", "h1")
    dials = event(world, "call.answered", "h2", state=body["client_state"])
    by_buyer = {meta(d)["b"]: d for _, d in dials}
    assert set(by_buyer) == {world["b"], c}
    legs = {world["b"]: "v3:leg-b", c: "v3:leg-c"}
    for buyer, control in legs.items():
        event(world, "call.initiated", f"h-{control}", control=control, direction="outgoing",
              state=by_buyer[buyer]["client_state"])
    # Telnyx cancels the ringing legs as the caller leaves; theirs come first.
    assert cancelled(world, "h3", legs[c], by_buyer[c]) == []
    assert cancelled(world, "h4", legs[world["b"]], by_buyer[world["b"]]) == []
    assert event(world, "call.hangup", "h5", hangup_cause="normal_clearing",
                 hangup_source="caller") == []
    log = the_log(world)
    assert (log.outcome, log.buyer_id, log.converted) == ("caller_hung_up", None, False)
    assert sorted(o["buyer"] for o in log.offers) == sorted([world["b"], c])


def recovering_plan(world) -> tuple[int, int]:
    """Two tiers of one buyer each (not converted under a minute), and recovery."""
    first, second = (new_buyer(world, n, min_duration=60) for n in ("+12125550104",
                                                                    "+12125550105"))
    plan_on_the_number(world, [{"buyers": [first]}, {"buyers": [second]}],
                       recovery={"min_seconds": 30, "attempts": 1})
    return first, second


def test_a_bridged_caller_who_leaves_is_not_recovered(world):
    first, _ = recovering_plan(world)
    [(_, body)] = event(world, "call.initiated", "k1")
    [(_, dial)] = event(world, "call.answered", "k2", state=body["client_state"])
    assert meta(dial)["b"] == first
    leg = dict(control="v3:leg-b", direction="outgoing", state=dial["client_state"])
    event(world, "call.initiated", "k3", **leg)
    [(path, _)] = event(world, "call.answered", "k4", **leg)
    assert path == "/calls/v3:caller/actions/bridge"
    # The caller hangs up at once; the buyer's leg ends with it, and its event comes first.
    assert cancelled(world, "k5", "v3:leg-b", dial, cause="normal_clearing") == []
    assert event(world, "call.hangup", "k6", hangup_cause="normal_clearing",
                 hangup_source="caller") == []
    log = the_log(world)
    assert (log.outcome, log.buyer_id) == ("connected", first)
    assert [o["buyer"] for o in log.offers] == [first]


def test_a_buyer_who_hangs_up_at_once_is_still_recovered(world):
    """The same hang-up from the buyer's side (source "callee") recovers the call."""
    _, second = recovering_plan(world)
    [(_, body)] = event(world, "call.initiated", "m1")
    [(_, dial)] = event(world, "call.answered", "m2", state=body["client_state"])
    leg = dict(control="v3:leg-b", direction="outgoing", state=dial["client_state"])
    event(world, "call.answered", "m3", **leg)
    [(path, again)] = event(world, "call.hangup", "m4", hangup_cause="normal_clearing",
                            hangup_source="callee", **leg)
    assert path == "/calls" and meta(again)["b"] == second
