"""A routed call when Redis dies mid-call (issue 15: "Redis down mid-call: the caller still
reaches the fallback"), on a redis-server of the test's own, killed between two turns."""

from __future__ import annotations

import signal

import pytest
from ports import free_port
from test_durability import start_redis

from carriers.conftest import serve
from carriers.scripts import Caller, Keys, Line
from carriers.test_routing_twilio import BUYER_1, FALLBACK, ZIP_IVR, buyer, routed_number
from carriers.twilio_sim import TwilioSimulator
from factories import ADMIN_TOKEN, TWILIO_TOKEN, AdminClient


@pytest.fixture
def redis_to_kill(tmp_path):
    port = free_port()
    proc = start_redis(port, tmp_path)
    yield f"redis://127.0.0.1:{port}/0", proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def routed_app(make_app, redis_to_kill):
    from carriers.conftest import Carriers

    url, _ = redis_to_kill
    app = make_app(REDIS_URL=url, DNI_REDIS_TIMEOUT_MS="500", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    base, server, thread = serve(app)
    twilio = TwilioSimulator(base, TWILIO_TOKEN)
    yield Carriers(base, app, AdminClient(app.test_client(), ADMIN_TOKEN), twilio, None)
    twilio.http.close()
    server.shutdown()
    thread.join(5)


def test_redis_killed_after_the_first_turn_the_caller_reaches_the_fallback(routed_app,
                                                                          redis_to_kill):
    first = buyer(routed_app, BUYER_1)
    number = routed_number(routed_app, [{"buyers": [first], "mode": "weighted"}], ivr=ZIP_IVR)
    _, proc = redis_to_kill

    def kill_before_the_zip(url):
        if "/gather/" in url and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    routed_app.twilio.before_request = kill_before_the_zip
    call = routed_app.twilio.call(number, Caller(keys=(Keys("94105"),), talk=30),
                                  lines={BUYER_1: Line.answers(2), FALLBACK: Line.answers(2)})

    assert call.errors == []  # never an application error, never dead air
    assert call.bridged is not None and call.bridged.target == FALLBACK


def test_redis_killed_after_the_first_turn_the_caller_is_not_left_in_silence(routed_app,
                                                                           redis_to_kill):
    first = buyer(routed_app, BUYER_1)
    number = routed_number(routed_app, [{"buyers": [first], "mode": "weighted"}], ivr=ZIP_IVR,
                           fallback={"message": "Sorry, please call again."})
    _, proc = redis_to_kill

    def kill_before_the_zip(url):
        if "/gather/" in url and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    routed_app.twilio.before_request = kill_before_the_zip
    call = routed_app.twilio.call(number, Caller(keys=(Keys("94105"),), talk=30),
                                  lines={BUYER_1: Line.answers(2)})

    assert call.errors == []
    assert call.said()[-1] and call.verbs()[-1]["verb"] == "Hangup"
    assert call.said()[:2] == ["Thanks for calling.", "Please key your ZIP code."]


@pytest.mark.parametrize("line, reaches", [(Line.no_answer(), FALLBACK), (Line.answers(2), None)])
def test_redis_killed_before_the_offer_ends(routed_app, redis_to_kill, line, reaches):
    """Unanswered: the caller goes on to the fallback. Answered (the caller talked to the
    buyer): the call ends there, never rung through to the fallback afterwards."""
    first = buyer(routed_app, BUYER_1)
    number = routed_number(routed_app, [{"buyers": [first], "mode": "weighted"}])
    _, proc = redis_to_kill

    def kill_before_the_dial_ends(url):
        if url.endswith("/dial") and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    routed_app.twilio.before_request = kill_before_the_dial_ends
    call = routed_app.twilio.call(number, Caller(talk=30), lines={
        BUYER_1: line, FALLBACK: Line.answers(2)})

    assert call.errors == []
    assert proc.poll() is not None
    assert [[o.target for o in offers] for offers in call.offers] == (
        [[BUYER_1], [FALLBACK]] if reaches else [[BUYER_1]])
    assert call.bridged.target == (reaches or BUYER_1)
