"""The call-time window every destination checks through ``base.TimeWindow``."""

import datetime as dt

import pytest

from attribution.conversions.base import CLOCK_SKEW, TimeWindow
from attribution.conversions.registry import build_destination
from conversions.samples import NOW, conversion

WINDOW = TimeWindow(dt.timedelta(hours=1), too_old="x: too old", future="x: in the future")


@pytest.mark.parametrize(("occurred_at", "problem"), [
    (NOW - dt.timedelta(hours=1), None),  # exactly at the limit: still taken
    (NOW - dt.timedelta(hours=1, seconds=1), "x: too old"),
    (NOW + CLOCK_SKEW, None),  # clock drift
    (NOW + CLOCK_SKEW + dt.timedelta(seconds=1), "x: in the future"),
])
def test_window_limits(occurred_at, problem):
    assert WINDOW.problem(conversion(occurred_at=occurred_at), NOW) == problem


def test_a_window_without_limits_takes_any_time():
    anything = TimeWindow(None)
    for occurred_at in (NOW - dt.timedelta(days=3650), NOW + dt.timedelta(days=365)):
        assert anything.problem(conversion(occurred_at=occurred_at), NOW) is None


RECEIVERS = {"ga4": "ga4_receiver", "google": "google_receiver", "meta": "meta_receiver",
             "microsoft": "microsoft_receiver"}
TOO_OLD = {"ga4": (dt.timedelta(hours=72), "ga4: older than 72 hours"),
           "meta": (dt.timedelta(days=7), "meta: older than 7 days"),
           "microsoft": (dt.timedelta(days=90), "microsoft: conversion time is more than 90 days ago")}
FUTURE = {"ga4": "ga4: event time is in the future",
          "google": "google: conversion time is in the future",
          "microsoft": "microsoft: conversion time is in the future"}


@pytest.mark.parametrize("kind", sorted(RECEIVERS))
def test_each_destination_keeps_its_own_window(kind, request):
    receiver = request.getfixturevalue(RECEIVERS[kind])
    dest = build_destination(kind, receiver.config())
    ahead = dest.check(conversion(occurred_at=NOW + dt.timedelta(minutes=6)), NOW)
    if kind in FUTURE:
        assert ahead == FUTURE[kind] and ahead.status == "failed"
    else:
        assert ahead is None  # Meta never had a check of times ahead of ours
    if kind in TOO_OLD:
        age, message = TOO_OLD[kind]
        old = dest.check(conversion(occurred_at=NOW - age - dt.timedelta(seconds=1)), NOW)
        assert old.startswith(message) and old.status == "failed"
        assert dest.check(conversion(occurred_at=NOW - age), NOW) is None
    else:
        assert dest.check(conversion(occurred_at=NOW - dt.timedelta(days=3650)), NOW) is None
