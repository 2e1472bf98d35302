"""`dni numbers search|buy|release|upkeep` against the Twilio fake."""

from __future__ import annotations

import re

from fakes import TWILIO_SID, TWILIO_TOKEN

TWILIO = {"name": "cli-twilio", "carrier": "twilio",
          "credentials": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}}


def run(app, *args):
    return app.test_cli_runner().invoke(args=["dni", "numbers", *args])


def test_search_buy_replay_and_release(carrier_app, admin, pool, twilio_fake):
    assert admin.post("/v1/carrier-accounts", json=TWILIO).status_code == 201
    found = run(carrier_app, "search", "cli-twilio", "--area-code", "415", "--limit", "2")
    assert found.exit_code == 0, found.output
    assert len(re.findall(r"^\+1415\d{7}\t", found.stdout, re.M)) == 2

    bought = run(carrier_app, "buy", str(pool["id"]), "--account", "cli-twilio", "--count", "2",
                 "--area-code", "415", "--key", "cli-run-0001")
    assert bought.exit_code == 0, bought.output
    lines = re.findall(r"^(\d+)\t(\+1415\d{7})\tadded\t", bought.stdout, re.M)
    assert len(lines) == 2 and set(twilio_fake.owned) == {n for _, n in lines}

    replay = run(carrier_app, "buy", str(pool["id"]), "--account", "cli-twilio", "--count",
                 "2", "--area-code", "415", "--key", "cli-run-0001")
    assert replay.exit_code == 0 and "nothing new was bought" in replay.output
    assert twilio_fake.count("buy") == 2

    released = run(carrier_app, "release", lines[0][0], "--quarantine-hours", "0")
    assert released.exit_code == 0, released.output
    assert re.search(rf"^{lines[0][0]}\t\{lines[0][1]}\tquarantined\t", released.stdout, re.M)
    again = run(carrier_app, "release", lines[0][0])
    assert "not in a pool" in again.stdout

    upkeep = run(carrier_app, "upkeep")
    assert upkeep.exit_code == 0 and "released=" in upkeep.stdout
    assert twilio_fake.violations == []


def test_bad_arguments_fail_cleanly(carrier_app, pool):
    assert run(carrier_app, "search", "no-such-account").exit_code == 2
    assert run(carrier_app, "buy", "999", "--account", "x", "--count", "1").exit_code == 2
    assert run(carrier_app, "buy", str(pool["id"]), "--account", "x", "--count", "0") \
        .exit_code == 2
