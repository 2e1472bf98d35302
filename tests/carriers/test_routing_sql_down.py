"""Routed calls while SQL is down (issue 15: "SQL down: plans and buyers are served from the
cached copy, like routes today"): a process that read the plans keeps them; one that has
nothing yet reads the copy mirrored in Redis. The caller is routed all the same."""

from __future__ import annotations

import pytest
from test_call_failures import sql_outage_app

from carriers.conftest import Carriers, serve
from carriers.scripts import Caller, Keys, Line
from carriers.test_routing_twilio import BUYER_1, BUYER_2, ZIP_IVR, buyer, routed_number
from carriers.twilio_sim import TwilioSimulator
from factories import ADMIN_TOKEN, TWILIO_TOKEN, AdminClient
from pools.mirror import MirroredCache


@pytest.fixture
def outage_app(make_app, database_url):
    with sql_outage_app(make_app, database_url) as (app, outage):
        base, server, thread = serve(app)
        twilio = TwilioSimulator(base, TWILIO_TOKEN)
        try:
            yield Carriers(base, app, AdminClient(app.test_client(), ADMIN_TOKEN), twilio,
                           None), outage
        finally:
            twilio.http.close()
            server.shutdown()
            thread.join(5)


def plan_with_two_tiers(carriers) -> str:
    first = buyer(carriers, BUYER_1)
    second = buyer(carriers, BUYER_2)
    return routed_number(carriers, [{"buyers": [first], "mode": "weighted"},
                                    {"buyers": [second], "mode": "weighted"}], ivr=ZIP_IVR)


def test_with_sql_down_a_routed_call_is_served_from_the_cached_plans(outage_app):
    carriers, outage = outage_app
    number = plan_with_two_tiers(carriers)
    with carriers.app.app_context():  # this process reads its maps once, before the outage
        from dni_server.api.routing_calls import routing_directory

        carriers.app.extensions["dni"].routes.routes()
        assert routing_directory().current().plans
    outage(True)
    try:
        call = carriers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=90), lines={
            BUYER_1: Line.busy(), BUYER_2: Line.answers(3)})
    finally:
        outage(False)

    assert call.errors == []
    assert call.said()[:2] == ["Thanks for calling.", "Please key your ZIP code."]
    assert [[o.target for o in offers] for offers in call.offers] == [[BUYER_1], [BUYER_2]]
    assert call.bridged.target == BUYER_2


def test_a_process_started_during_an_sql_outage_routes_from_the_redis_copy(outage_app):
    carriers, outage = outage_app
    number = plan_with_two_tiers(carriers)
    with carriers.app.app_context():
        from dni_server.api.routing_calls import routing_directory

        carriers.app.extensions["dni"].routes.routes()  # each writes its Redis copy
        assert routing_directory().current().plans
    # A new process: nothing in memory, neither routes nor plans.
    carriers.app.extensions.pop("routing")
    routes = carriers.app.extensions["dni"].routes
    routes._cache = MirroredCache(routes._cache.load, redis=routes._cache.redis,
                                  key=routes._cache.key, encode=routes._cache.encode,
                                  decode=routes._cache.decode, ttl_seconds=10, default=dict)
    outage(True)
    try:
        call = carriers.twilio.call(number, Caller(keys=(Keys("94105"),), talk=90), lines={
            BUYER_1: Line.answers(2), BUYER_2: Line.answers(3)})
    finally:
        outage(False)

    assert call.errors == []
    assert [[o.target for o in offers] for offers in call.offers] == [[BUYER_1]]
    assert call.bridged.target == BUYER_1
