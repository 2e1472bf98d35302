"""Touches: the snippet's report of a tap on a swapped tel: link or a copy of a swapped number,
recorded only for the number the session holds, and read back by matching."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from dni_server.extensions import db
from factories import CHROME_UA, make_pool, make_site, numbers, post_session
from pool_helpers import SITE, load_pool
from pools.errors import PoolNotLoaded, WrongSite
from pools.keys import touches_key
from pools.leases import LeaseRequest, PoolService
from pools.touches import LIMITED, MAX_TOUCHES, NOT_HELD, OTHER_NUMBER, RECORDED

T0 = 1_700_000_000_000
N1, N2 = numbers(2)  # +16505550101, +16505550102


@pytest.fixture
def svc(redis_client):
    return PoolService(redis_client, prefix="t")


def held(svc, session: str, at_ms: int = T0) -> str:
    return svc.lease(LeaseRequest(1, session, at_ms)).number


# -- the pool service ---------------------------------------------------------------------


@pytest.mark.parametrize("shown", ["+16505550101", "16505550101", "(650) 555-0101",
                                   "6505550101", "tel:+1-650-555-0101"])
def test_a_touch_of_the_held_number_in_any_layout_is_recorded(svc, shown):
    load_pool(svc, 1, [N1])
    assert held(svc, "s1") == N1
    assert svc.touch([1], "s1", SITE, shown, "click", T0 + 5_000) == [RECORDED]
    assert svc.touches(1, N1, T0) == [("s1", "click", T0 + 5_000)]


def test_a_national_layout_with_a_trunk_prefix_is_the_same_number(svc):
    load_pool(svc, 1, ["+442079460123"])
    held(svc, "s1")
    assert svc.touch([1], "s1", SITE, "020 7946 0123", "copy", T0 + 1) == [RECORDED]
    assert svc.touches(1, "+442079460123", T0) == [("s1", "copy", T0 + 1)]


def test_a_page_cannot_plant_evidence_for_a_number_its_session_does_not_hold(svc):
    load_pool(svc, 1, [N1, N2])
    mine = held(svc, "s1")
    other = held(svc, "s2")
    assert svc.touch([1], "s1", SITE, other, "click", T0 + 1) == [OTHER_NUMBER]
    assert svc.touch([1], "nobody", SITE, mine, "click", T0 + 1) == [NOT_HELD]
    assert svc.touches(1, other, 0) == [] and svc.touches(1, mine, 0) == []
    # Released: the session no longer holds it, whatever it claims.
    svc.release(1, "s1", T0 + 2)
    assert svc.touch([1], "s1", SITE, mine, "click", T0 + 3) == [NOT_HELD]
    assert svc.touches(1, mine, 0) == []


def test_each_session_and_kind_is_kept_once_at_its_latest_touch(svc):
    load_pool(svc, 1, [N1])
    held(svc, "s1")
    for at in (T0 + 1, T0 + 2, T0 + 3):
        svc.touch([1], "s1", SITE, N1, "click", at)
    svc.touch([1], "s1", SITE, N1, "copy", T0 + 4)
    assert svc.touches(1, N1, 0) == [("s1", "click", T0 + 3), ("s1", "copy", T0 + 4)]
    assert svc.touches(1, N1, T0 + 4) == [("s1", "copy", T0 + 4)]  # since_ms: at or after


def test_a_later_holder_cannot_push_out_an_earlier_holders_touch(svc):
    """The earlier holder's touch is what matching needs for a late caller."""
    load_pool(svc, 1, [N1], lease_s=60)
    held(svc, "early")
    svc.touch([1], "early", SITE, N1, "click", T0 + 10_000)
    svc.release(1, "early", T0 + 20_000)
    held(svc, "late", T0 + 30_000)
    for i in range(50):
        svc.touch([1], "late", SITE, N1, "click" if i % 2 else "copy", T0 + 31_000 + i)
    assert [t[0] for t in svc.touches(1, N1, 0)] == ["early", "late", "late"]


def test_the_list_is_bounded_in_count_and_in_age(svc):
    load_pool(svc, 1, [N1], lease_s=3600)
    for i in range(MAX_TOUCHES + 5):
        svc.release(1, f"s{i - 1}", T0 + i * 1000)
        held(svc, f"s{i}", T0 + i * 1000)
        svc.touch([1], f"s{i}", SITE, N1, "click", T0 + i * 1000 + 1)
    kept = svc.touches(1, N1, 0)
    assert len(kept) == MAX_TOUCHES
    assert kept[0][0] == "s5" and kept[-1][0] == f"s{MAX_TOUCHES + 4}"
    # A touch a day later drops every older one, and the hash expires after a day unused.
    later = T0 + 86_400_000 + 60_000
    svc.release(1, f"s{MAX_TOUCHES + 4}", later)
    held(svc, "next", later)
    svc.touch([1], "next", SITE, N1, "copy", later + 1)
    assert svc.touches(1, N1, 0) == [("next", "copy", later + 1)]
    assert 0 < svc.redis.pttl(touches_key(1, "t")) <= 86_400_000


def test_touches_past_the_session_limit_record_nothing(svc):
    load_pool(svc, 1, [N1])
    held(svc, "s1")
    outcomes = [svc.touch([1], "s1", SITE, N1, "click", T0 + i, limit=3)[0] for i in range(5)]
    assert outcomes == [RECORDED] * 3 + [LIMITED] * 2
    assert svc.touches(1, N1, 0) == [("s1", "click", T0 + 2)]
    assert svc.status(1, T0)["counters"]["touches_limited"] == 2


def test_another_sites_key_and_an_unloaded_pool_are_told_apart(svc):
    load_pool(svc, 1, [N1])
    held(svc, "s1")
    [wrong] = svc.touch([1], "s1", "site_other", N1, "click", T0)
    assert isinstance(wrong, WrongSite)
    [missing] = svc.touch([9], "s1", SITE, N1, "click", T0)
    assert isinstance(missing, PoolNotLoaded)
    with pytest.raises(ValueError):
        svc.touch([1], "s1", SITE, N1, "hover", T0)


def test_a_session_of_two_pools_records_where_it_holds_the_number_in_one_round_trip(
        svc, redis_client):
    load_pool(svc, 1, [N1])
    load_pool(svc, 2, [N2])
    svc.lease(LeaseRequest(1, "s1", T0))
    svc.lease(LeaseRequest(2, "s1", T0))
    # Server-wide counts: another test on a shared Redis can only add to them, so the least
    # of a few measures is this client's own (one pipeline: a script per pool).
    seen = []
    for _ in range(5):
        before = _script_calls(redis_client)
        assert svc.touch([1, 2], "s1", SITE, "650-555-0102", "copy", T0 + 1) == [
            OTHER_NUMBER, RECORDED]
        seen.append(_script_calls(redis_client) - before)
    assert min(seen) == 2
    assert svc.touches(2, N2, 0) == [("s1", "copy", T0 + 1)] and svc.touches(1, N1, 0) == []


def _script_calls(redis_client) -> int:
    stats = redis_client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


# -- the API ------------------------------------------------------------------------------


def post_touch(client, session_id: str, body, *, raw: bool = False):
    """POST a touch the way the snippet's beacon does (JSON as text/plain)."""
    return client.post(f"/v1/sessions/{session_id}/touch",
                       data=body if raw else json.dumps(body),
                       headers={"Content-Type": "text/plain;charset=UTF-8",
                                "User-Agent": CHROME_UA, "Origin": "https://shop.example"})


@pytest.fixture
def site(admin):
    return make_site(admin)


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site, numbers=numbers(2))


def started(client, site) -> tuple[str, str]:
    body = post_session(client, site["key"]).get_json()
    return body["session_id"], body["numbers"][0]["number"]


def test_the_api_records_a_tap_and_a_copy_with_no_sql(app, client, site, pool):
    sid, number = started(client, site)
    pools = app.extensions["dni"].pools
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        tap = post_touch(client, sid, {"site": site["key"], "number": number, "kind": "click"})
        national = f"({number[2:5]}) {number[5:8]}-{number[8:]}"
        copy = post_touch(client, sid, {"site": site["key"], "number": national, "kind": "copy"})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []
    assert (tap.status_code, copy.status_code) == (204, 204)
    assert tap.data == b"" and tap.headers["Access-Control-Allow-Origin"] == "*"
    assert [(s, kind) for s, kind, _ in pools.touches(pool["id"], number, 0)] == [
        (sid, "click"), (sid, "copy")]


def test_a_touch_of_a_number_the_session_does_not_hold_is_ignored(app, client, site, pool):
    sid, number = started(client, site)
    other = ({*numbers(2)} - {number}).pop()
    answer = post_touch(client, sid, {"site": site["key"], "number": other, "kind": "click"})
    assert answer.status_code == 204
    pools = app.extensions["dni"].pools
    assert pools.touches(pool["id"], other, 0) == [] and pools.touches(pool["id"], number, 0) == []


@pytest.mark.parametrize("body, status, code", [
    ({"number": "+16505550101", "kind": "click"}, 422, "invalid"),
    ({"site": "k", "number": "+16505550101", "kind": "hover"}, 422, "invalid"),
    ({"site": "k", "number": "call us", "kind": "copy"}, 422, "invalid"),
    ({"site": "k", "number": 6505550101, "kind": "copy"}, 422, "invalid"),
    ("not json", 400, "malformed_json"),
    ("[]", 400, "malformed_json"),
])
def test_bad_input_is_a_clear_4xx(client, site, pool, body, status, code):
    sid, _ = started(client, site)
    if isinstance(body, dict) and "site" in body:
        body["site"] = site["key"]
    answer = post_touch(client, sid, body, raw=isinstance(body, str))
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["error"]["code"] == code


def test_an_unknown_session_or_another_sites_key_is_a_404(admin, client, site, pool):
    sid, number = started(client, site)
    forged = sid[:-1] + ("0" if sid[-1] != "0" else "1")
    other = make_site(admin, name="Other")
    for session_id, key in [(forged, site["key"]), (sid, other["key"])]:
        answer = post_touch(client, session_id, {"site": key, "number": number, "kind": "click"})
        assert answer.status_code == 404
        assert answer.get_json()["error"]["code"] == "unknown_session"


def test_redis_away_is_a_503_with_a_retry_hint(app, client, site, pool):
    sid, number = started(client, site)
    guard = app.extensions["dni"].sessions.pools.guard  # the snippet path's own client
    guard._open_until = guard.clock() + 60  # as after sustained failure
    answer = post_touch(client, sid, {"site": site["key"], "number": number, "kind": "click"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"


def test_the_touch_is_in_the_openapi_document(client):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/v1/sessions/{session_id}/touch"]["post"]
    assert "security" not in operation  # public, like the rest of the snippet API
    assert {"204", "400", "404", "413", "422", "503"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/TouchRequest")


# -- the simulator --------------------------------------------------------------------------


def simulated(redis_client, app, model, size: int):
    """One small simulated pool, its Redis state kept for reading back (dropped after)."""
    from attribution.simulation import forget, free_block
    from attribution.simulation.model import PoolSettings, plan
    from attribution.simulation.runner import PoolRun

    settings = PoolSettings(lease_seconds=60, cooldown_seconds=0, attribution_window_seconds=600)
    schedule = plan(model, settings, days=0.02, seed=3, start_ms=T0)
    with app.app_context():
        run = PoolRun(redis_client, db.session, schedule, settings, size, prefix="touchsim",
                      number_block=free_block(db.session))
        result = run.run()
        found = {(c.visit, c.at_ms): run.pools.touches(run.pool.id, c.dialled, 0)
                 for c in result.calls}
        sessions = {c.visit: c.true_session for c in result.calls}
    forget(redis_client, "touchsim")
    return schedule, result, found, sessions


def test_simulated_mobile_callers_tap_the_link_just_before_calling(redis_client, app):
    import dataclasses

    from attribution.simulation.model import TrafficModel

    model = TrafficModel(arrivals_per_hour=120, hourly_weights=(1.0,) * 24, call_share=1.0,
                         mobile_share=1.0, mobile_tel_link_share=1.0, touch_reported_share=1.0)
    schedule, result, found, sessions = simulated(redis_client, app, model, 50)
    calls = {v.index: v.call for v in schedule.visits if v.call}
    assert result.calls and all(c.phase == "during" for c in result.calls)
    for c in result.calls:
        call = calls[c.visit]
        assert call.touch == c.touch == "click"
        # A second or two before the call, and not before the visit began.
        assert 1000 <= c.at_ms - call.touch_ms <= 2000 \
            or call.touch_ms == schedule.visits[c.visit].start_ms
        mine = [t for t in found[(c.visit, c.at_ms)] if t[0] == sessions[c.visit]]
        assert [(kind, at) for _, kind, at in mine] == [("click", call.touch_ms)]
    # Touches come from an RNG of their own: the visits and calls are the seed's as before.
    quiet = plan_of(dataclasses.replace(model, touch_reported_share=0.0))
    assert [(v.start_ms, v.call.at_ms) for v in quiet.visits] == [
        (v.start_ms, v.call.at_ms) for v in schedule.visits]
    assert not any(v.call.touch for v in quiet.visits)


def plan_of(model):
    from attribution.simulation.model import PoolSettings, plan

    settings = PoolSettings(lease_seconds=60, cooldown_seconds=0, attribution_window_seconds=600)
    return plan(model, settings, days=0.02, seed=3, start_ms=T0)


def test_simulated_late_callers_touch_nothing(redis_client, app):
    from attribution.simulation.model import TrafficModel

    model = TrafficModel(arrivals_per_hour=120, hourly_weights=(1.0,) * 24, call_share=1.0,
                         mobile_share=0.5, mobile_tel_link_share=0.0, desktop_during_share=0.0,
                         desktop_copy_share=1.0, touch_reported_share=1.0)
    _, result, found, _ = simulated(redis_client, app, model, 50)
    assert result.calls and not any(c.touch for c in result.calls)
    assert not any(found.values())


def test_simulated_desktop_callers_copy_at_the_models_share():
    from attribution.simulation.model import TrafficModel

    model = TrafficModel(arrivals_per_hour=2000, hourly_weights=(1.0,) * 24, call_share=1.0,
                         mobile_share=0.0, desktop_during_share=1.0, desktop_copy_share=0.5,
                         touch_reported_share=0.8)
    calls = [v.call for v in plan_of(model).visits]
    share = sum(1 for c in calls if c.touch == "copy") / len(calls)
    assert len(calls) > 500 and 0.33 < share < 0.47  # 0.5 x 0.8
    assert {c.touch for c in calls} == {"copy", None}
