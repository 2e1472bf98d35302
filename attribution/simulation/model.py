"""The traffic model: who visits, how long, how often the snippet renews, who calls and when.

Everything here is pure: a seed and a model give the same schedule of visits, heartbeats and
calls every time, before any pool is involved. The runner (``attribution.simulation.runner``)
then plays that one schedule against pools of several sizes.

Geography: each visitor lives in a US state and calls from one phone; a visit is located
(as IP geolocation would place it) in the visitor's state or, now and then, elsewhere, and
the phone's area code is of the visitor's state unless they moved and kept their number.
That is what the matcher's area evidence (``attribution.call_areas``) has to work with.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field

from attribution import callers
from attribution.sessions import NumberEntry, renew_in_seconds

HOUR_MS = 3_600_000
# The default day: quiet at night, busiest late morning and early afternoon (relative weights,
# hour 0 to 23 UTC of the simulated site).
BUSINESS_DAY = (0.2, 0.15, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.1, 1.5, 1.8, 1.9,
                1.8, 1.8, 1.7, 1.6, 1.5, 1.3, 1.1, 1.0, 0.9, 0.7, 0.5, 0.3)


@dataclass(frozen=True)
class PoolSettings:
    """The pool settings the simulated pools get (the service's own knobs)."""

    lease_seconds: int = 1800
    """How long a lease lives without a renewal (the snippet renews at a third of it)."""
    cooldown_seconds: int = 60
    """How long a lapsed number rests before another visitor may get it."""
    attribution_window_seconds: int = 2 * 3600
    """How long after a lease lapsed a call to its number still goes to it if nobody held
    the number since (``session_expired``)."""
    max_lease_seconds: int = 4 * 3600
    """Longest a session may hold one number."""


@dataclass(frozen=True)
class TrafficModel:
    """Visitors, visits and calls of one site, with production-like defaults.

    Durations are lognormal (a median and a spread ``sigma``, the standard deviation of the
    logarithm), which gives the long tails real visit lengths and call delays have.
    """

    arrivals_per_hour: float = 40.0
    """New visits per hour, averaged over the day (returning visits come on top)."""
    hourly_weights: tuple[float, ...] = BUSINESS_DAY
    """Relative arrival rate of each hour of the day (24 values, any scale)."""
    visit_median_seconds: float = 180.0
    """Median time a visitor stays on the site."""
    visit_sigma: float = 1.0
    """Spread of visit lengths (lognormal sigma)."""
    visit_max_seconds: float = 2 * 3600.0
    """No visit lasts longer (a tab left open is a visit that ended)."""
    pages_mean: float = 3.0
    """Mean page views per visit (at least 1; geometric). Each page view renews the lease,
    as the snippet's heartbeat does; between them it renews every ``renew_in`` seconds (a
    third of the remaining lease, at most 300 s), as the service answers."""
    returning_share: float = 0.2
    """Share of visits after which the same visitor (same visitor id, same phone) comes back
    for another visit."""
    return_median_hours: float = 24.0
    """Median time from the end of a visit to the visitor's return."""
    return_sigma: float = 1.0
    """Spread of return times (lognormal sigma)."""
    call_share: float = 0.08
    """Share of visits followed by one phone call to the number the visit was shown."""
    mobile_share: float = 0.6
    """Share of visits made on a phone."""
    mobile_tel_link_share: float = 0.75
    """Share of mobile callers who call during the visit by tapping a ``tel:`` link. Each
    tap is a touch the snippet reports (``touch_reported_share``), a second or two before
    the call."""
    desktop_during_share: float = 0.3
    """Share of desktop callers who call while the page is still open."""
    desktop_copy_share: float = 0.25
    """Of the desktop callers who call while the page is open, the share who copy the number
    off the page (into a softphone, a messenger, a note sent to their phone) rather than
    read and type it: most desktop visitors still dial on a separate phone, so a minority,
    but not a small one in offices that call from their computers."""
    touch_reported_share: float = 0.9
    """Share of taps and copies whose report reaches the service: a content blocker, a
    browser without ``sendBeacon`` or a page script that swallows the click loses the
    rest. A touch is sent only while the visitor still holds the number: later callers
    dial from memory or the call log, and touch nothing."""
    right_after_share: float = 0.5
    """Of the callers who call after the visit, the share who call right after leaving."""
    right_after_mean_seconds: float = 120.0
    """Mean delay of a right-after call from the end of the visit (exponential)."""
    later_median_seconds: float = 2 * 3600.0
    """Median delay of a later call from the end of the visit (the long tail)."""
    later_sigma: float = 1.2
    """Spread of later call delays (lognormal sigma)."""
    later_max_seconds: float = 3 * 86400.0
    """No call comes later than this after its visit."""
    home_state: str | None = None
    """The site's own state (two-letter code) when it is a local business; None: a national
    site. Visitors not from it live in a state drawn in proportion to its area codes (a
    rough stand-in for its population)."""
    home_share: float = 0.0
    """Share of visitors who live in ``home_state`` (1.0: a purely local business)."""
    geo_miss_share: float = 0.1
    """Share of visits that IP geolocation places in another state than the visitor's (a
    mobile carrier's gateway, a VPN, an office network routed elsewhere)."""
    phone_home_share: float = 0.75
    """Share of visitors whose phone has an area code of the state they live in; the others
    moved and kept their number (its state drawn like a visitor's)."""

    def __post_init__(self):
        if len(self.hourly_weights) != 24 or min(self.hourly_weights) < 0 \
                or not sum(self.hourly_weights):
            raise ValueError("hourly_weights needs 24 non-negative values, not all zero")
        for name in ("returning_share", "call_share", "mobile_share", "mobile_tel_link_share",
                     "desktop_during_share", "right_after_share", "desktop_copy_share",
                     "touch_reported_share", "home_share", "geo_miss_share",
                     "phone_home_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if (self.home_share or self.home_state) and self.home_state not in area_codes():
            raise ValueError("home_share needs home_state, a US state's two-letter code")
        if self.arrivals_per_hour < 0 or self.pages_mean < 1:
            raise ValueError("arrivals_per_hour must be >= 0 and pages_mean >= 1")


@dataclass
class PlannedCall:
    """A call the visitor of a visit makes; ``phase`` is during, right_after or later.

    ``touch``: the snippet's report just before the call, click (a tap on the ``tel:``
    link) or copy, at ``touch_ms``; None when the visitor touched nothing on the page.
    """

    at_ms: int
    phase: str
    touch: str | None = None
    touch_ms: int = 0


@dataclass
class PlannedVisit:
    """One visit as the traffic model planned it, before any pool answered."""

    index: int
    visitor: int
    mobile: bool
    start_ms: int
    end_ms: int
    pages_ms: list[int]  # page views, the first at start_ms
    beats: list[tuple[int, bool]] = field(default_factory=list)  # (ms, is a page view)
    call: PlannedCall | None = None
    # Geography (``plan`` places every visit; a replayed one may have none): the visitor's
    # state, the state the visit is located in (its Visit.region), the area code of the
    # visitor's phone.
    state: str | None = None
    located: str | None = None
    phone_area_code: int | None = None

    @property
    def visitor_id(self) -> str:
        return f"v_sim{self.visitor:07d}"

    @property
    def phone(self) -> str | None:
        """The visitor's phone: made of the visitor's number, so a runner that renumbers
        visitors (to keep them apart across schedules) keeps their phones apart too."""
        if self.phone_area_code is None:
            return None
        return phone_number(self.phone_area_code, self.visitor)


@dataclass
class Schedule:
    """Every visit of a run, in order of arrival, and the span their arrivals cover."""

    visits: list[PlannedVisit]
    start_ms: int
    span_ms: int
    lease_ms: int

    @property
    def calls(self) -> int:
        return sum(1 for v in self.visits if v.call)

    def mean_load(self) -> float:
        """Mean leases held at once over the whole run, if no visitor were ever refused."""
        held = sum(self._held(v)[1] - self._held(v)[0] for v in self.visits)
        return held / self.span_ms if self.span_ms else 0.0

    def offered_load(self) -> float:
        """Mean leases held at once in the busiest hour of the day, if no visitor were ever
        refused: what a pool must carry (the whole day's mean counts the night in).

        Lease-time of each hour of the run, averaged over the days for each hour of the
        day; the largest of those 24 means.
        """
        per_hour: dict[int, float] = {}
        for visit in self.visits:
            start, end = self._held(visit)
            hour = (start - self.start_ms) // HOUR_MS
            while self.start_ms + hour * HOUR_MS < end:
                lo = max(start, self.start_ms + hour * HOUR_MS)
                hi = min(end, self.start_ms + (hour + 1) * HOUR_MS)
                per_hour[hour] = per_hour.get(hour, 0.0) + (hi - lo) / HOUR_MS
                hour += 1
        hours = range(max(1, math.ceil(self.span_ms / HOUR_MS)))
        by_hour_of_day: dict[int, list[float]] = {}
        for hour in hours:
            by_hour_of_day.setdefault(hour % 24, []).append(per_hour.get(hour, 0.0))
        return max(sum(loads) / len(loads) for loads in by_hour_of_day.values())

    def _held(self, visit: PlannedVisit) -> tuple[int, int]:
        """When the visit's lease would begin and lapse (after its last heartbeat)."""
        return visit.start_ms, visit.beats[-1][0] + self.lease_ms


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def _arrivals(rng: random.Random, model: TrafficModel, start_ms: int, days: float) -> list[int]:
    """Poisson arrivals, hour by hour, at each hour's rate."""
    mean_weight = sum(model.hourly_weights) / 24
    out: list[int] = []
    hours = math.ceil(days * 24)
    span_ms = int(days * 86_400_000)
    for hour in range(hours):
        rate = model.arrivals_per_hour * model.hourly_weights[hour % 24] / mean_weight
        if rate <= 0:
            continue
        t = 0.0
        while True:
            t += rng.expovariate(rate)  # hours
            if t >= 1:
                break
            at = hour * HOUR_MS + int(t * HOUR_MS)
            if at < span_ms:
                out.append(start_ms + at)
    return out


def heartbeats(start_ms: int, end_ms: int, pages_ms: list[int], lease_ms: int) -> list[tuple[int, bool]]:
    """When the snippet asks the service during a visit: at each page view, and in between
    every ``renew_in`` (the service's answer: a third of the remaining lease)."""
    beats = [(start_ms, True)]
    pending = list(pages_ms[1:])
    last = start_ms
    while True:
        renew_in = renew_in_seconds([NumberEntry("", "", last + lease_ms)], last) * 1000
        timer = last + renew_in
        if pending and pending[0] <= timer:
            last = pending.pop(0)
            beats.append((last, True))
        elif timer < end_ms:
            last = timer
            beats.append((last, False))
        else:
            return beats


def _plan_call(rng: random.Random, model: TrafficModel, visit: PlannedVisit) -> PlannedCall:
    during = model.mobile_tel_link_share if visit.mobile else model.desktop_during_share
    if rng.random() < during:
        return PlannedCall(rng.randint(visit.start_ms, visit.end_ms), "during")
    if rng.random() < model.right_after_share:
        delay = rng.expovariate(1 / model.right_after_mean_seconds)
        return PlannedCall(visit.end_ms + int(delay * 1000), "right_after")
    delay = min(_lognormal(rng, model.later_median_seconds, model.later_sigma),
                model.later_max_seconds)
    return PlannedCall(visit.end_ms + int(delay * 1000), "later")


def _plan_touch(rng: random.Random, model: TrafficModel, visit: PlannedVisit) -> None:
    """Whether the caller tapped or copied the number on the page, a second or two before
    dialling. Only callers during the visit can: the page is gone for the others."""
    call = visit.call
    if call is None or call.phase != "during":
        return
    kind = "click" if visit.mobile else "copy"
    share = model.touch_reported_share * (1.0 if visit.mobile else model.desktop_copy_share)
    if rng.random() < share:
        call.touch = kind
        call.touch_ms = max(visit.start_ms, call.at_ms - rng.randint(1000, 2000))


def _plan_visit(rng: random.Random, model: TrafficModel, index: int, visitor: int,
                mobile: bool, start_ms: int, lease_ms: int) -> PlannedVisit:
    length = min(_lognormal(rng, model.visit_median_seconds, model.visit_sigma),
                 model.visit_max_seconds)
    end_ms = start_ms + int(length * 1000)
    pages = 1
    while rng.random() > 1 / model.pages_mean:
        pages += 1
    pages_ms = [start_ms] + sorted(rng.randint(start_ms, end_ms) for _ in range(pages - 1))
    visit = PlannedVisit(index, visitor, mobile, start_ms, end_ms, pages_ms)
    visit.beats = heartbeats(start_ms, end_ms, pages_ms, lease_ms)
    if rng.random() < model.call_share:
        visit.call = _plan_call(rng, model, visit)
    return visit


def plan(model: TrafficModel, pool: PoolSettings, *, days: float, seed: int,
         start_ms: int) -> Schedule:
    """The run's visits and calls: the same for the same model, days and seed."""
    rng = random.Random(seed)
    lease_ms = pool.lease_seconds * 1000
    span_ms = int(days * 86_400_000)
    arrivals = [(at, None) for at in _arrivals(rng, model, start_ms, days)]
    visits: list[PlannedVisit] = []
    visitors = 0
    mobile_of: dict[int, bool] = {}
    # Arrivals in time order; a returning visit joins the queue when it is planned.
    queue = sorted(arrivals, key=lambda a: a[0])
    i = 0
    while i < len(queue):
        at, visitor = queue[i]
        i += 1
        if visitor is None:
            visitor, visitors = visitors, visitors + 1
            mobile_of[visitor] = rng.random() < model.mobile_share
        visit = _plan_visit(rng, model, len(visits), visitor, mobile_of[visitor], at, lease_ms)
        visits.append(visit)
        if rng.random() < model.returning_share:
            back = visit.end_ms + int(_lognormal(rng, model.return_median_hours,
                                                 model.return_sigma) * HOUR_MS)
            if back < start_ms + span_ms:
                _insort(queue, (back, visitor), i)
    # Touches from an RNG of their own: the visits and calls of a seed stay what they were.
    touch_rng = random.Random(f"touches:{seed}")
    for visit in visits:
        _plan_touch(touch_rng, model, visit)
    _place(random.Random(f"geography:{seed}"), model, visits)  # so does geography
    return Schedule(visits, start_ms, span_ms, lease_ms)


def _insort(queue: list, item: tuple, lo: int) -> None:
    """Insert a returning visit among the arrivals not yet planned, in time order."""
    hi = len(queue)
    while lo < hi:
        mid = (lo + hi) // 2
        if queue[mid][0] <= item[0]:
            lo = mid + 1
        else:
            hi = mid
    queue.insert(lo, item)


# -- geography -------------------------------------------------------------------------------

# The exchanges simulated phones use. An area code counts for a state only when each of them
# gives a valid number the geocoder places in that state: validity and the geocoder's places
# go by exchange (most are known by city, "Newark, NJ", a few across a state line, the rest
# by a state name ``callers`` may not map to a code), so only exchanges checked are used.
EXCHANGES = tuple(range(200, 210))
LINES = 7000  # lines 3000-9999 of each exchange
PHONES_PER_AREA_CODE = len(EXCHANGES) * LINES


@functools.cache
def area_codes() -> dict[str, tuple[int, ...]]:
    """US state (two-letter code, DC included) -> its geographic area codes, as the caller
    identification the matcher uses (``callers.identify``) reads them: derived once from the
    phone number metadata rather than typed in, so a simulated phone's state is exactly
    the region the service sees. Area codes it cannot place in one state are left out."""
    states: dict[str, list[int]] = {}
    codes = set(callers.NANP_REGIONS.values())
    for code in range(201, 990):
        state = _us_state(phone_number(code, 0))
        if state in codes and all(_us_state(phone_number(code, i * LINES)) == state
                                  for i in range(1, len(EXCHANGES))):
            states.setdefault(state, []).append(code)
    return {state: tuple(found) for state, found in sorted(states.items())}


def _us_state(number: str) -> str | None:
    caller = callers.identify(number)
    return caller.region if caller.valid and caller.country == "US" else None


def phone_number(area_code: int, serial: int) -> str:
    """The ``serial``-th simulated phone of ``area_code`` (they repeat after
    ``PHONES_PER_AREA_CODE``, far more visitors than a run has)."""
    serial %= PHONES_PER_AREA_CODE
    return f"+1{area_code}{EXCHANGES[serial // LINES]}{3000 + serial % LINES:04d}"


def _weighted_state(rng: random.Random, but: str | None = None) -> str:
    """A state drawn in proportion to its area codes (``but``: any other state)."""
    states = [(state, len(codes)) for state, codes in area_codes().items() if state != but]
    return rng.choices([s for s, _ in states], weights=[w for _, w in states])[0]


def _home(rng: random.Random, model: TrafficModel) -> str:
    if model.home_state and rng.random() < model.home_share:
        return model.home_state
    return _weighted_state(rng)


def _place(rng: random.Random, model: TrafficModel, visits: list[PlannedVisit]) -> None:
    """Give every visitor a state and a phone, and every visit its located state."""
    people: dict[int, tuple[str, int]] = {}  # visitor -> (state, their phone's area code)
    for visit in visits:
        if visit.visitor not in people:
            state = _home(rng, model)
            phone_state = state if rng.random() < model.phone_home_share \
                else _weighted_state(rng)
            people[visit.visitor] = (state, rng.choice(area_codes()[phone_state]))
        visit.state, visit.phone_area_code = people[visit.visitor]
        visit.located = _weighted_state(rng, but=visit.state) \
            if rng.random() < model.geo_miss_share else visit.state
