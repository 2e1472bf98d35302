"""The routing CLI: create-buyer and create-plan take the API's JSON and its checks; buyers
shows live calls and today's cap use from Redis."""

from __future__ import annotations

import datetime as dt
import json

from routing.capacity import Capacity


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=["dni", *args], input=input)


def test_create_buyer_plan_and_list_buyers_with_their_use(app):
    buyer = {"name": "Roofers", "timezone": "America/Denver",
             "targets": [{"number": "+12125550101"}], "caps": {"concurrency": 4,
                                                               "conversions": {"day": 20}},
             "conversion": {"min_duration": 60}, "revenue": "25"}
    result = run(app, "create-buyer", "-", input=json.dumps(buyer))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "buyer 1 created: Roofers"
    bad = run(app, "create-buyer", "-", input=json.dumps(buyer | {"timezone": "Nowhere"}))
    assert bad.exit_code == 2 and "timezone" in bad.output
    plan = {"name": "Roofing", "tiers": [{"buyers": [1]}]}
    assert run(app, "create-plan", "-", input=json.dumps(plan)).output.strip() == \
        "routing plan 1 created: Roofing"
    missing = run(app, "create-plan", "-", input=json.dumps({"name": "X",
                                                             "tiers": [{"buyers": [7]}]}))
    assert missing.exit_code == 2 and "unknown buyer 7" in missing.output

    services = app.extensions["dni"]
    capacity = Capacity(services.redis_admin, services.settings.redis_prefix)
    stored = buyer | {"revenue": "25.00", "targets": [{"number": "+12125550101"}]}
    now = dt.datetime.now(dt.UTC)
    capacity.reserve(1, stored, "CA1", None, now)
    capacity.reserve(1, stored, "CA2", None, now)
    capacity.release(1, stored, "CA2", None, now, connected=True, converted=True)
    listing = run(app, "buyers")
    assert listing.exit_code == 0, listing.output
    line = listing.output.splitlines()[1]
    assert "Roofers" in line and "active" in line and "1/4" in line
    assert "calls 2," in line and "conversions 1/20" in line and "revenue 25.00" in line
