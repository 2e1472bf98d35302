"""The caller's area as evidence, learned from a site's own calls and visits.

A candidate visit located in region V, a caller whose number is from region R: the evidence
is the likelihood ratio P(V | this visit made the call) / P(V | it did not). The second is
the share of the site's recent visits located in R (a random visit's region), ``q(R)``. The
first mixes two kinds of caller: with probability ``affinity`` the visit's location is tied
to the phone's (the visitor lives where the number is from, and geolocation placed them
there), otherwise it is where any visit is. So

    P(V == R | caller) = affinity + (1 - affinity) * q(R)
    match ratio        = 1 + affinity * (1 - q(R)) / q(R)
    mismatch ratio     = 1 - affinity

A national site, whose visits are spread, learns strong ratios (a match on a state a few
percent of visits come from says much). A local one, whose visits are nearly all in its
state, learns ratios near 1: everyone matches, so a match says nothing, and a mismatch
(a phone from elsewhere) is no rarer among its callers than among its visits. A single share
of matching calls, divided by q(R), would not see that: on a local site most callers match
only because most visits are local, and a mismatch would then look like evidence *for* a
candidate.

``affinity`` is learned from the site's unambiguous calls (``call_delays.UNWEIGHED``: one
plausible lease, so the visit is surely the caller's) whose caller's and visit's regions are
both known: each match counts ``1 - q(R)`` above what chance gives, each mismatch ``q(R)``
below (the method of moments for the mixture), blended with ``PRIOR_AFFINITY`` as
``PRIOR_CALLS`` calls' worth so a handful of calls cannot make it 0 or 1.

Regions are keyed with their country ("US", "CA"): a caller from another country than the
visit is a mismatch like any other. Where a region is unknown, the matcher keeps its weak
constants (``likelihood.AREA_MATCH_LR``, ``AREA_MISMATCH_LR``), as it does before a site has
``MIN_CALLS`` such calls and ``MIN_VISITS`` located visits.

Read from the existing tables (the site's latest ``RECENT_CALLS`` unambiguous calls with
their visits, and the regions of its latest ``RECENT_VISITS`` visits: two indexed queries)
and cached per site and publisher for ``learned_cache.CACHE_SECONDS``, like the call delays.
Calls count within the pool's site and publisher (docs/architecture.md, "Tenants"); visits
within its site.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from attribution import callers
from attribution.call_delays import UNWEIGHED
from attribution.learned_cache import LearnedCache
from attribution.likelihood import AREA_LR_MAX, AREA_LR_MIN
from attribution.models import Call, Visit

RECENT_CALLS = 300
RECENT_VISITS = 5000
MIN_CALLS = 20  # unambiguous calls with both regions known; fewer: the weak constants
# Located visits; fewer: the weak constants. The shares of some fifty regions need a few
# visits each, or the smoothing rather than the site sets them.
MIN_VISITS = 200
PRIOR_AFFINITY = 0.4  # a mismatch weighs 0.6, the weak constant, until calls say otherwise
PRIOR_CALLS = 20.0

Region = tuple[str, str]  # (country, region code), upper case


@dataclass(frozen=True)
class Areas:
    """What a site's calls and visits say about its callers' areas."""

    affinity: float  # share of callers whose visit is located where their number is from
    visits: dict[Region, int] = field(default_factory=dict)  # located visits per region
    calls: int = 0  # unambiguous calls it was learned from
    _total: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_total", sum(self.visits.values()))

    def share(self, region: Region) -> float:
        """q(R): the share of the site's visits located in ``region``, add-one smoothed over
        the regions seen and one unseen, so no region is impossible."""
        return (self.visits.get(region, 0) + 1) / (self._total + len(self.visits) + 1)

    def ratio(self, caller: Region, visit: Region) -> float:
        """The likelihood ratio of a candidate visit located in ``visit`` for a caller whose
        number is from ``caller``, within ``likelihood.AREA_LR_MIN`` .. ``AREA_LR_MAX``."""
        if caller != visit:
            return max(1 - self.affinity, AREA_LR_MIN)
        q = self.share(caller)
        return min(1 + self.affinity * (1 - q) / q, AREA_LR_MAX)


def area_evidence(areas: Areas | None, caller: Region | None,
                  visit: Region | None) -> tuple[bool | None, float | None]:
    """A candidate visit located in ``visit`` for a caller from ``caller``: match or
    mismatch (None: either unknown) and its learned likelihood ratio (None: the site has
    taught none yet, so the matcher's weak constants apply)."""
    if caller is None or visit is None:
        return None, None
    return caller == visit, areas.ratio(caller, visit) if areas is not None else None


_cache = LearnedCache()  # per (site, publisher): Areas, or None


def areas_for(db: Session, site_id: int, publisher: str | None, at_ms: int, *,
              clock=time.monotonic) -> Areas | None:
    """The site's areas as of a call at ``at_ms`` (None: too little known yet), learned at
    most once a minute, like the call delays (``learned_cache``)."""
    return _cache.get((site_id, publisher), at_ms,
                        lambda: learn(db, site_id, publisher, at_ms), clock=clock)


def forget(site_id: int | None = None) -> None:
    """Drop what was learned of one site, or of all (tests, a new simulation)."""
    _cache.forget(lambda key: site_id is None or key[0] == site_id)


def learn(db: Session, site_id: int, publisher: str | None, at_ms: int) -> Areas | None:
    """Areas from the site's calls and visits before ``at_ms``; None below ``MIN_CALLS``
    usable calls or ``MIN_VISITS`` located visits."""
    at = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    visits = _visit_regions(db, site_id, at)
    if sum(visits.values()) < MIN_VISITS:
        return None
    pairs = _call_regions(db, site_id, publisher, at)
    if len(pairs) < MIN_CALLS:
        return None
    return Areas(_affinity(pairs, Areas(0.0, visits).share), visits, len(pairs))


def _affinity(pairs: list[tuple[Region, Region]], share) -> float:
    """The mixture's weight, by the method of moments: E[match] = a + (1 - a) q(R), so
    a = sum(match - q) / sum(1 - q), blended with the prior; clamped so the mismatch ratio
    stays within bounds."""
    above = PRIOR_CALLS * PRIOR_AFFINITY
    room = PRIOR_CALLS
    for caller, visit in pairs:
        q = share(caller)
        above += (caller == visit) - q
        room += 1 - q
    return min(max(above / room, 0.0), 1 - AREA_LR_MIN)


def _visit_regions(db: Session, site_id: int, at: dt.datetime) -> dict[Region, int]:
    """Located visits per region among the site's latest ``RECENT_VISITS`` (ix_visits_site_created)."""
    latest = (select(Visit.country, Visit.region)
              .where(Visit.site_id == site_id, Visit.created_at < at, Visit.region.is_not(None))
              .order_by(Visit.created_at.desc()).limit(RECENT_VISITS).subquery())
    out: dict[Region, int] = {}
    for country, region, count in db.execute(
            select(latest.c.country, latest.c.region, func.count())
            .group_by(latest.c.country, latest.c.region)):
        key = region_key(country, region)
        if key is not None:
            out[key] = out.get(key, 0) + count
    return out


def _call_regions(db: Session, site_id: int, publisher: str | None,
                  at: dt.datetime) -> list[tuple[Region, Region]]:
    """(caller's region, visit's region) of the site's latest unambiguous calls whose
    visit is located (ix_calls_site_started, then each call's visit by its key)."""
    plain = or_(*(and_(Call.method == method, Call.confidence == confidence)
                  for method, confidence in UNWEIGHED.items()))
    query = (select(Call.from_number, Call.from_valid, Call.caller_country, Call.caller_region,
                    Visit.country, Visit.region)
             .join(Visit, Visit.session_id == Call.session_id)
             .where(Call.site_id == site_id, Call.started_at < at, plain,
                    Visit.region.is_not(None),
                    Call.publisher == publisher if publisher is not None
                    else Call.publisher.is_(None))
             .order_by(Call.started_at.desc()).limit(RECENT_CALLS))
    out = []
    for number, valid, country, region, visit_country, visit_region in db.execute(query):
        caller = caller_region(number, valid, country, region)
        visit = region_key(visit_country, visit_region)
        if caller is not None and visit is not None:
            out.append((caller, visit))
    return out


def caller_region(number: str, valid: bool, country: str | None,
                  region: str | None) -> Region | None:
    """Where a stored call's caller is from: the region stored with it, else (a carrier
    that gave the country alone) the one its number is from."""
    return region_key(country, region) or (_number_region(number) if valid else None)


@functools.lru_cache(maxsize=20_000)
def _number_region(number: str) -> Region | None:
    """A stored call without the caller's region (the carrier gave the country alone): the
    region its number is from, once per number (the geocoder is slow to load)."""
    caller = callers.identify(number)
    return region_key(caller.country, caller.region) if caller.valid else None


def region_key(country: str | None, region: str | None) -> Region | None:
    """The key regions are compared by: (country, region code), upper case; a North
    American region given by name (a carrier's "California") by its code. None when either
    is unknown."""
    country, region = (country or "").strip().upper(), (region or "").strip()
    if not country or not region:
        return None
    return country, callers.NANP_REGIONS.get(region, region).upper()
