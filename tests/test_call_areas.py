"""The caller's area as learned evidence (``attribution.call_areas``), and the simulator's
geography that exercises it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from attribution import call_areas
from attribution.call_areas import Areas, areas_for, learn, region_key
from attribution.callers import identify
from attribution.likelihood import AREA_LR_MAX, AREA_LR_MIN
from attribution.models import Call, Visit
from attribution.simulation import PoolSettings, TrafficModel, plan
from attribution.simulation.model import area_codes, phone_number
from dni_server.extensions import db
from factories import make_site

T0 = int(dt.datetime(2026, 5, 4, 14, 0, tzinfo=dt.UTC).timestamp() * 1000)
SERIAL = itertools.count(1)
SPREAD = ("CA", "TX", "FL", "NY", "IL", "PA", "OH", "GA", "NC", "MI")


@pytest.fixture(autouse=True)
def fresh_areas():
    call_areas.forget()
    yield
    call_areas.forget()


def moment(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def add_visit(site_id: int, region: str | None, at_ms: int, country: str = "US") -> str:
    session = f"area-{next(SERIAL)}"
    db.session.add(Visit(session_id=session, site_id=site_id, visitor_id="v_" + session,
                         created_at=moment(at_ms), country=country if region else None,
                         region=region))
    return session


def add_call(site_id: int, session: str, caller_region: str | None, at_ms: int, *,
             method: str = "session", confidence: float = 1.0, publisher: str | None = None,
             from_number: str = "+14155550123") -> None:
    db.session.add(Call(provider="test", provider_call_id=f"areas{next(SERIAL)}",
                        from_number=from_number, from_valid=True, to_number="+16505550101",
                        started_at=moment(at_ms), site_id=site_id, session_id=session,
                        method=method, confidence=confidence, publisher=publisher,
                        caller_country="US" if caller_region else None,
                        caller_region=caller_region, explanation={}))


def teach(site_id: int, visit_regions, caller_regions, **call_fields) -> None:
    """A visit per region of ``visit_regions``, one an hour before T0; the first visits
    called, from the regions of ``caller_regions`` in turn."""
    regions = list(visit_regions)
    for i, region in enumerate(regions):
        at = T0 - 3_600_000 + i * 1000
        session = add_visit(site_id, region, at)
        if i < len(caller_regions):
            add_call(site_id, session, caller_regions[i], at + 60_000, **call_fields)
    db.session.flush()


def national(count: int, match_share: float) -> tuple[list[str], list[str]]:
    """Visits spread evenly over ten states; callers from their visit's state in
    ``match_share`` of calls, else from the next state of the list."""
    visits = [SPREAD[i % len(SPREAD)] for i in range(count)]
    matched = round(match_share * 10)
    callers = [v if i % 10 < matched else SPREAD[(SPREAD.index(v) + 1) % len(SPREAD)]
               for i, v in enumerate(visits)]
    return visits, callers


def local(count: int) -> tuple[list[str], list[str]]:
    """Every visit in Texas; three callers in four have a Texas number, the rest moved in
    with numbers from elsewhere."""
    return ["TX"] * count, ["TX" if i % 4 else SPREAD[i % len(SPREAD)] for i in range(count)]


@pytest.fixture
def site(app, admin):
    return make_site(admin)


# -- the ratios, pure ----------------------------------------------------------------------


def test_a_match_on_a_rare_region_says_more_than_on_a_common_one():
    areas = Areas(0.6, {("US", "CA"): 400, ("US", "VT"): 4, ("US", "TX"): 300})
    ca, vt, tx = ("US", "CA"), ("US", "VT"), ("US", "TX")
    assert areas.ratio(vt, vt) > areas.ratio(ca, ca) > 1
    assert areas.ratio(ca, tx) == areas.ratio(vt, ca) == pytest.approx(0.4)
    # Bounded both ways, and a region no visit came from is still possible.
    assert Areas(0.99, {ca: 5000}).ratio(vt, vt) == AREA_LR_MAX
    assert Areas(0.99, {ca: 5000}).ratio(ca, vt) == AREA_LR_MIN
    assert 0 < areas.share(("US", "WY")) < areas.share(vt)
    # No affinity: the area says nothing.
    assert Areas(0.0, {ca: 10, tx: 10}).ratio(ca, ca) == Areas(0.0, {ca: 10}).ratio(ca, tx) == 1


def test_area_evidence_is_the_match_and_its_learned_ratio():
    areas = Areas(0.6, {("US", "CA"): 400, ("US", "VT"): 4})
    ca, vt = ("US", "CA"), ("US", "VT")
    assert call_areas.area_evidence(areas, vt, vt) == (True, areas.ratio(vt, vt))
    assert call_areas.area_evidence(areas, vt, ca) == (False, pytest.approx(0.4))
    # Nothing learned yet: the match still counts, at the matcher's weak constants.
    assert call_areas.area_evidence(None, vt, ca) == (False, None)
    # Either side unknown: no evidence at all.
    assert call_areas.area_evidence(areas, None, ca) == call_areas.area_evidence(
        areas, vt, None) == (None, None)


def test_regions_are_compared_by_country_and_code():
    assert region_key("us", "California") == region_key("US", "CA") == ("US", "CA")
    assert region_key("US", None) is None and region_key(None, "CA") is None
    assert region_key("CA", "ON") != region_key("US", "ON")


# -- learning from a site's calls and visits ---------------------------------------------------


def test_a_national_site_learns_strong_ratios(app, site):
    with app.app_context():
        teach(site["id"], *national(300, match_share=0.8))
        areas = learn(db.session, site["id"], None, T0)
    assert areas is not None and areas.calls == 300
    assert 0.65 < areas.affinity < 0.85
    ca = ("US", "CA")
    assert areas.ratio(ca, ca) > 5 and areas.ratio(ca, ("US", "TX")) < 0.35


def test_a_local_site_learns_ratios_near_one(app, site):
    with app.app_context():
        teach(site["id"], *local(300))
        areas = learn(db.session, site["id"], None, T0)
    tx = ("US", "TX")
    assert areas is not None and areas.affinity < 0.15
    assert 1 <= areas.ratio(tx, tx) < 1.05  # every visit matches a Texan: it says nothing
    assert areas.ratio(("US", "CA"), tx) > 0.85  # nor does a number from elsewhere


def test_too_little_to_go_by_gives_the_defaults(app, site):
    with app.app_context():
        assert learn(db.session, site["id"], None, T0) is None
        visits, callers = national(300, 0.8)
        teach(site["id"], visits, callers[:call_areas.MIN_CALLS - 1])  # too few calls
        assert learn(db.session, site["id"], None, T0) is None
        teach(site["id"], visits[:50], callers[:50])  # now enough calls, visits aplenty
        assert learn(db.session, site["id"], None, T0) is not None
        # Only what came before the call being matched counts.
        assert learn(db.session, site["id"], None, T0 - 3_600_000) is None
        db.session.rollback()


def test_few_located_visits_give_the_defaults(app, site):
    with app.app_context():
        teach(site["id"], *national(call_areas.MIN_VISITS - 1, 0.8))
        for _ in range(200):
            add_visit(site["id"], None, T0 - 60_000)  # not located: no region to count
        assert learn(db.session, site["id"], None, T0) is None
        db.session.rollback()


def test_only_unambiguous_calls_teach(app, site):
    with app.app_context():
        visits, callers = national(300, 1.0)
        teach(site["id"], visits, callers[:10])
        weighed = visits[10:]  # weighed calls: their visit is not sure
        teach(site["id"], weighed, [SPREAD[(SPREAD.index(v) + 1) % 10] for v in weighed],
              method="session", confidence=0.83)
        assert learn(db.session, site["id"], None, T0) is None
        teach(site["id"], weighed[:30], weighed[:30], method="session_expired",
              confidence=0.6)
        areas = learn(db.session, site["id"], None, T0)
        assert areas is not None and areas.calls == 40 and areas.affinity > 0.6
        db.session.rollback()


def test_a_call_stored_without_its_callers_region_is_placed_by_its_number(app, site):
    texan = phone_number(area_codes()["TX"][0], 0)
    with app.app_context():
        visits = ["TX"] * 30 + [SPREAD[i % 10] for i in range(400)]
        teach(site["id"], visits, [None] * 30, from_number=texan)
        areas = learn(db.session, site["id"], None, T0)
        assert areas is not None and areas.calls == 30 and areas.affinity > 0.6
        db.session.rollback()


def test_another_sites_or_publishers_calls_never_count(app, admin, site):
    other = make_site(admin, name="Other Co")
    with app.app_context():
        teach(other["id"], *national(300, 0.9))
        assert learn(db.session, site["id"], None, T0) is None
        assert learn(db.session, other["id"], None, T0) is not None
        # The site's own visits, and calls of another publisher on it: still nothing.
        visits, callers = national(300, 0.9)
        teach(site["id"], visits, callers, publisher="acme")
        assert learn(db.session, site["id"], None, T0) is None
        assert learn(db.session, site["id"], "acme", T0).calls == 300
        db.session.rollback()


def test_areas_are_cached_a_minute_by_both_clocks(app, site):
    with app.app_context():
        teach(site["id"], *national(300, 0.8))
        ticks = iter([0.0, 1.0, 2.0, 100.0])
        first = areas_for(db.session, site["id"], None, T0, clock=lambda: next(ticks))
        assert first is not None
        assert areas_for(db.session, site["id"], None, T0 + 1000,
                         clock=lambda: next(ticks)) is first
        db.session.rollback()  # the calls are gone; what was learned stays a minute
        # The calls' clock a minute on: learned again (from nothing now).
        assert areas_for(db.session, site["id"], None, T0 + 61_000,
                         clock=lambda: next(ticks)) is None
        teach(site["id"], *national(300, 0.8))
        assert areas_for(db.session, site["id"], None, T0 + 61_000,
                         clock=lambda: next(ticks)) is not None  # the process's clock
        call_areas.forget(site["id"])
        assert call_areas._cache.entries == {}
        db.session.rollback()


# -- the simulator's geography ---------------------------------------------------------------


def test_every_state_is_read_from_the_number_metadata():
    states = area_codes()
    assert len(states) >= 45 and len(states["CA"]) > len(states["TX"]) > len(states["VT"]) == 1
    assert all(len(code) == 2 for code in states)
    assert len(states) == 51  # the 50 states and DC: "Washington State" reads as WA too
    assert identify("+12065550123").region == "WA"


def schedule(model: TrafficModel, seed: int = 5, days: float = 1.0):
    return plan(model, PoolSettings(), days=days, seed=seed, start_ms=0)


def geography(plan_) -> list[tuple]:
    return [(v.index, v.visitor, v.state, v.located, v.phone) for v in plan_.visits]


def test_a_seed_gives_the_same_geography_and_the_same_visits_as_without_it():
    model = TrafficModel()
    first, again = schedule(model), schedule(model)
    assert geography(first) == geography(again)
    assert geography(schedule(model, seed=6)) != geography(first)
    # The visits and calls are those a model without geography plans.
    local_ = schedule(dataclasses.replace(model, home_state="TX", home_share=1.0))
    assert [(v.start_ms, v.end_ms, v.call and v.call.at_ms) for v in local_.visits] == [
        (v.start_ms, v.end_ms, v.call and v.call.at_ms) for v in first.visits]


def test_callers_have_valid_numbers_of_a_state_one_phone_per_visitor():
    plan_ = schedule(TrafficModel(), days=3)
    phones: dict[int, str] = {}
    for visit in plan_.visits:
        assert phones.setdefault(visit.visitor, visit.phone) == visit.phone
    assert len(set(phones.values())) == len(phones)  # no two visitors share a phone
    for phone in list(phones.values())[:400]:
        caller = identify(phone)
        assert caller.valid and caller.country == "US" and caller.region in area_codes()


def weight(state: str) -> float:
    """A state's share of the area codes: how often a visitor is drawn from it."""
    return len(area_codes()[state]) / sum(len(codes) for codes in area_codes().values())


def shares(model: TrafficModel) -> tuple[float, float, float, float]:
    """(visitors living in Texas, visitors whose phone is from their state, what the model
    makes of that, visits located in their visitor's state)."""
    visits = schedule(model, days=4).visits
    people = list({v.visitor: v for v in visits}.values())
    texans = sum(v.state == "TX" for v in people) / len(people)
    home_phone = sum(identify(v.phone).region == v.state for v in people) / len(people)
    # A phone from elsewhere is from the visitor's own state again now and then.
    stay = model.phone_home_share
    expected = sum(stay + (1 - stay) * weight(v.state) for v in people) / len(people)
    located = sum(v.located == v.state for v in visits) / len(visits)
    return texans, home_phone, expected, located


def test_the_shares_come_out_near_their_parameters():
    texans, home_phone, expected, located = shares(TrafficModel())
    assert abs(texans - weight("TX")) < 0.02
    assert abs(home_phone - expected) < 0.03 and abs(located - 0.9) < 0.02
    model = TrafficModel(home_state="TX", home_share=0.8, phone_home_share=0.5,
                         geo_miss_share=0.3)
    texans, home_phone, expected, located = shares(model)
    assert abs(texans - (0.8 + 0.2 * weight("TX"))) < 0.03
    assert abs(home_phone - expected) < 0.03 and abs(located - 0.7) < 0.03


def test_geography_parameters_are_checked():
    with pytest.raises(ValueError):
        TrafficModel(home_share=0.5)  # a home share needs a home state
    with pytest.raises(ValueError):
        TrafficModel(home_state="XX", home_share=0.5)
    with pytest.raises(ValueError):
        TrafficModel(geo_miss_share=1.5)
