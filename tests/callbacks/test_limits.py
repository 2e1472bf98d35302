"""The abuse limits: request.lua against a real Redis, and the API's 429s."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from attribution.callbacks import keys
from attribution.callbacks.limits import DAY_MS, HOUR_MS, MINUTE_MS, CallbackLimits, Limits
from attribution.callbacks.models import Callback
from callbacks.helpers import post_callback, site_with_session
from dni_server.extensions import db

T0 = 1_800_000_000_000
PHONE, OTHER, THIRD, FOURTH = "+16505550177", "+16505550178", "+16505550179", "+16505550180"
FAR = T0 + 10 * DAY_MS


def limits(redis_client, **overrides) -> CallbackLimits:
    return CallbackLimits(redis_client, prefix="tcb", limits=Limits(**overrides))


def admit(lim, at_ms, phone=PHONE, client="c1", site=1, cid=None):
    return lim.admit(site, client, phone, cid or f"cb{at_ms}{phone}{client}", at_ms, FAR)


def test_seven_requests_to_one_number_in_fifteen_minutes_then_refused(redis_client):
    lim = limits(redis_client)
    for i in range(7):
        assert admit(lim, T0 + i * MINUTE_MS).admitted
    refused = admit(lim, T0 + 8 * MINUTE_MS)
    assert refused.reason == "to_number" and refused.detail == str(15 * MINUTE_MS)
    assert not refused.flagged
    # Another client, or the same one 15 minutes after its first request, is fine again.
    assert admit(lim, T0 + 8 * MINUTE_MS, client="c2").admitted
    assert admit(lim, T0 + 15 * MINUTE_MS).admitted


def test_nine_in_an_hour_and_fifteen_in_a_day(redis_client):
    lim = limits(redis_client)
    at = [T0 + i * 6 * MINUTE_MS for i in range(9)]  # 9 in 48 minutes, <= 7 per 15 min
    for moment in at:
        assert admit(lim, moment).admitted, moment
    refused = admit(lim, T0 + 50 * MINUTE_MS)
    assert refused.reason == "to_number" and refused.detail == str(HOUR_MS)
    # Spread over the day: 15 admitted, the 16th refused for the day window.
    lim2 = limits(redis_client)
    for i in range(15):
        assert admit(lim2, T0 + i * HOUR_MS, client="d").admitted, i
    refused = admit(lim2, T0 + 15 * HOUR_MS, client="d")
    assert refused.reason == "to_number" and refused.detail == str(DAY_MS)


def test_a_third_number_in_an_hour_is_refused_and_flags_the_visitor(redis_client):
    lim = limits(redis_client)
    assert admit(lim, T0, PHONE).admitted
    assert admit(lim, T0 + 1, OTHER).admitted
    assert admit(lim, T0 + 2, PHONE).admitted  # asking again for a known number is fine
    third = admit(lim, T0 + 3, THIRD)
    assert third.reason == "numbers" and third.flagged and third.detail == str(HOUR_MS)
    # Flagged: even the first number is refused now, for a day.
    again = admit(lim, T0 + 4, PHONE)
    assert again.reason == "flagged" and again.flagged
    assert redis_client.pttl(keys.flagged_key(1, "c1", "tcb")) > DAY_MS - 1000
    assert admit(lim, T0 + DAY_MS + 10, PHONE).admitted


def test_a_fourth_number_in_a_day_is_refused(redis_client):
    lim = limits(redis_client)
    for i, phone in enumerate((PHONE, OTHER, THIRD)):
        assert admit(lim, T0 + i * 2 * HOUR_MS, phone).admitted
    fourth = admit(lim, T0 + 7 * HOUR_MS, FOURTH)
    assert fourth.reason == "numbers" and fourth.detail == str(DAY_MS) and fourth.flagged


def test_the_site_cap_counts_callbacks_in_progress_until_released(redis_client):
    lim = limits(redis_client, site_in_progress=2)
    assert admit(lim, T0, client="a", cid="cb1").admitted
    assert admit(lim, T0, client="b", cid="cb2").admitted
    busy = admit(lim, T0, client="c", cid="cb3")
    assert busy.reason == "site_busy" and busy.detail == "2"
    assert admit(lim, T0, client="c", site=2, cid="cb4").admitted  # another site's own cap
    lim.release(1, "cb1")
    assert admit(lim, T0, client="c", cid="cb5").admitted
    # A callback whose release never came stops counting at its lapse.
    assert lim.admit(1, "d", PHONE, "cb6", FAR + 1, FAR + DAY_MS).admitted


def test_one_round_trip_on_one_hash_tag(redis_client, monkeypatch):
    lim = limits(redis_client)
    sent = []
    original = type(redis_client).evalsha
    monkeypatch.setattr(type(redis_client), "evalsha",
                        lambda self, sha, n, *a: sent.append(a[:n]) or original(self, sha, n, *a))
    assert admit(lim, T0).admitted
    assert len(sent) == 1
    tags = {key[key.index("{"):key.index("}") + 1] for key in sent[0]}
    assert tags == {"{cb1}"}


def test_the_api_answers_429_with_the_reason(app, admin, client, monkeypatch):
    monkeypatch.setattr("dni_server.api.callbacks.utcnow",
                        lambda: dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC))
    site, session = site_with_session(admin, client)
    for phone in (PHONE, OTHER):
        assert post_callback(client, site["key"], session, phone).status_code == 202
    third = post_callback(client, site["key"], session, THIRD)
    assert third.status_code == 429
    assert third.get_json()["error"]["code"] == "callback_numbers"
    assert third.headers["Retry-After"] == "86400"
    with app.app_context():
        flagged = db.session.scalars(select(Callback.flagged)).all()
    assert flagged == [True, True]  # the visitor's earlier requests are marked for review
    # Another visitor (address and browser) is not affected.
    assert post_callback(client, site["key"], session, THIRD, ip="192.0.2.99").status_code == 202
