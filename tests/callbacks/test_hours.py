"""Calling hours: pure functions, across zones and DST changes."""

from __future__ import annotations

import datetime as dt

import pytest

from attribution.callbacks import hours

CA, FL, NY, UK, TOLL_FREE = "+16505550101", "+13055550101", "+12125550101", "+442079460123", \
    "+18005550100"


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(("number", "moment", "expected"), [
    (CA, utc(2026, 12, 7, 16, 0), utc(2026, 12, 7, 16, 0)),  # 08:00 PST: open
    (CA, utc(2026, 12, 7, 15, 59), utc(2026, 12, 7, 16, 0)),  # 07:59 PST: at 08:00
    (CA, utc(2026, 12, 8, 4, 59), utc(2026, 12, 8, 4, 59)),  # 20:59 PST: still open
    (CA, utc(2026, 12, 8, 5, 0), utc(2026, 12, 8, 16, 0)),  # 21:00 PST: next morning
    (NY, utc(2026, 12, 7, 2, 0), utc(2026, 12, 7, 13, 0)),  # 21:00 EST
    (UK, utc(2026, 12, 7, 21, 30), utc(2026, 12, 8, 8, 0)),  # 21:30 GMT
    (UK, utc(2026, 7, 7, 20, 30), utc(2026, 7, 8, 7, 0)),  # 21:30 BST: 08:00 BST = 07:00Z
])
def test_the_window_is_eight_to_nine_in_the_called_persons_zone(number, moment, expected):
    slot = hours.calling_slot(number, moment)
    assert slot.at == expected
    assert slot.deferred is (expected != moment)


def test_florida_closes_at_eight():
    # 20:30 in Miami: open in New York, closed in Florida.
    late = utc(2026, 12, 8, 1, 30)
    assert hours.calling_slot(NY, late).at == late
    slot = hours.calling_slot(FL, late)
    assert slot.rule == "US-FL" and slot.at == utc(2026, 12, 8, 13, 0)


def test_florida_allows_three_attempts_in_24_hours():
    attempts = (utc(2026, 12, 7, 14, 0), utc(2026, 12, 7, 15, 0), utc(2026, 12, 7, 16, 0))
    slot = hours.calling_slot(FL, utc(2026, 12, 7, 17, 0), attempts=attempts)
    assert slot.at == utc(2026, 12, 8, 14, 0)  # 24 h after the first of the three
    # Elsewhere a fourth attempt is not limited by the day.
    assert hours.calling_slot(NY, utc(2026, 12, 7, 17, 0), attempts=attempts).at == \
        utc(2026, 12, 7, 17, 0)


def test_spring_forward_opens_at_eight_local():
    # 8 March 2026, US clocks go forward at 02:00: 08:00 is EDT (12:00Z), not EST.
    assert hours.calling_slot(NY, utc(2026, 3, 8, 6, 0)).at == utc(2026, 3, 8, 12, 0)
    # The day before it was still EST: 08:00 = 13:00Z.
    assert hours.calling_slot(NY, utc(2026, 3, 7, 6, 0)).at == utc(2026, 3, 7, 13, 0)


def test_fall_back_closes_at_nine_local():
    # 1 November 2026, US clocks go back: 21:00 EST is 02:00Z the next day.
    assert hours.is_open(utc(2026, 11, 2, 1, 59), ("America/New_York",), hours.DEFAULT_RULE)
    assert not hours.is_open(utc(2026, 11, 2, 2, 0), ("America/New_York",), hours.DEFAULT_RULE)


def test_a_number_spanning_zones_waits_for_every_zone_and_closes_with_the_earliest():
    zones = ("America/New_York", "America/Los_Angeles")
    # 08:00 in New York is 05:00 in California: opens at 08:00 Pacific.
    assert hours.next_opening(utc(2026, 12, 7, 13, 0), zones, hours.DEFAULT_RULE) == \
        utc(2026, 12, 7, 16, 0)
    assert hours.closes_at(utc(2026, 12, 7, 18, 0), zones, hours.DEFAULT_RULE) == \
        utc(2026, 12, 8, 2, 0)  # 21:00 in New York


def test_a_toll_free_number_is_called_when_every_zone_it_may_reach_is_open():
    slot = hours.calling_slot(TOLL_FREE, utc(2026, 12, 7, 17, 0))
    assert len(slot.zones) > 5
    assert hours.is_open(slot.at, slot.zones, hours.DEFAULT_RULE)


def test_unknown_zone_falls_back_to_the_sites():
    assert hours.zones_for("+999") == ()
    slot = hours.calling_slot("+999", utc(2026, 12, 7, 3, 0), "Europe/Paris")
    assert slot.zones == ("Europe/Paris",) and slot.at == utc(2026, 12, 7, 7, 0)
