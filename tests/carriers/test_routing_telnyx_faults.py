"""A routed Telnyx call when Redis dies mid-call (issue 15: "Redis down mid-call: the
caller still reaches the fallback"), on a redis-server of the test's own, killed between two
events of the call."""

from __future__ import annotations

import signal

import pytest
from ports import free_port

from carriers.conftest import TELNYX_API_KEY, Carriers, serve
from carriers.scripts import Caller, Keys, Line
from carriers.telnyx_sim import TelnyxSimulator
from carriers.test_routing_faults import redis_to_kill  # noqa: F401  (a fixture)
from carriers.test_routing_twilio import BUYER_1, FALLBACK, ZIP_IVR, buyer, routed_number
from factories import ADMIN_TOKEN, AdminClient


@pytest.fixture
def routed_app(make_app, redis_to_kill):  # noqa: F811
    url, _ = redis_to_kill
    telnyx = TelnyxSimulator(free_port(), api_key=TELNYX_API_KEY)
    app = make_app(REDIS_URL=url, DNI_REDIS_TIMEOUT_MS="500",
                   DNI_TELNYX_PUBLIC_KEY=telnyx.public_key, DNI_TELNYX_API_KEY=TELNYX_API_KEY,
                   DNI_TELNYX_API_URL=telnyx.url)
    app.extensions["dni"].commands.delays = (0.05, 0.1, 0.2)
    base, server, thread = serve(app)
    telnyx.webhook_url = base + "/webhooks/telnyx"
    yield Carriers(base, app, AdminClient(app.test_client(), ADMIN_TOKEN), None, telnyx)
    telnyx.close()
    server.shutdown()
    thread.join(5)


def kill_redis_before(sim: TelnyxSimulator, proc, event_type: str, to: str | None = None):
    """Kill the redis-server just before the first delivery of ``event_type``."""
    deliver = sim._deliver

    def delivering(call, body, again=False):
        data = body["data"]
        if (data["event_type"] == event_type and proc.poll() is None
                and (to is None or data["payload"]["to"] == to)):
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        deliver(call, body, again)

    sim._deliver = delivering


def test_redis_killed_before_the_zip_the_caller_is_transferred_to_the_fallback(
        routed_app, redis_to_kill):  # noqa: F811
    first = buyer(routed_app, BUYER_1)
    number = routed_number(routed_app, [{"buyers": [first], "mode": "weighted"}], ivr=ZIP_IVR)
    _, proc = redis_to_kill
    kill_redis_before(routed_app.telnyx, proc, "call.gather.ended")

    call = routed_app.telnyx.call(number, Caller(keys=(Keys("94105"),), talk=30), lines={
        BUYER_1: Line.answers(2), FALLBACK: Line.answers(2)})

    assert routed_app.telnyx.errors == []
    assert proc.poll() is not None  # Redis was down for the rest of the call
    [transfer] = call.acted("transfer")
    assert transfer["body"]["to"] == FALLBACK
    assert call.legs[-1].to == FALLBACK and call.legs[-1].bridged_to is call.a_leg


def test_redis_killed_while_a_buyer_rings_the_caller_still_reaches_the_fallback(
        routed_app, redis_to_kill):  # noqa: F811
    first = buyer(routed_app, BUYER_1)
    number = routed_number(routed_app, [{"buyers": [first], "mode": "weighted"}], ivr=ZIP_IVR)
    _, proc = redis_to_kill
    kill_redis_before(routed_app.telnyx, proc, "call.hangup", to=BUYER_1)

    call = routed_app.telnyx.call(number, Caller(keys=(Keys("94105"),), talk=30), lines={
        BUYER_1: Line.no_answer(), FALLBACK: Line.answers(2)})

    assert routed_app.telnyx.errors == []
    assert [c["body"]["to"] for c in call.commands if c["name"] == "dial"] == [BUYER_1]
    [transfer] = call.acted("transfer")
    assert transfer["body"]["to"] == FALLBACK
    assert call.legs[-1].to == FALLBACK and call.legs[-1].bridged_to is call.a_leg


def test_redis_killed_while_talking_the_caller_is_hung_up_with_the_buyer(
        routed_app, redis_to_kill):  # noqa: F811
    first = buyer(routed_app, BUYER_1)
    number = routed_number(routed_app, [{"buyers": [first], "mode": "weighted"}])
    _, proc = redis_to_kill
    kill_redis_before(routed_app.telnyx, proc, "call.bridged")

    call = routed_app.telnyx.call(number, Caller(talk=None), lines={
        BUYER_1: Line.hangs_up(after=2, talk=40)})

    assert routed_app.telnyx.errors == []
    assert call.a_leg.ended_at == call.legs[1].ended_at  # not left parked in silence
    assert call.acted("transfer") == []
