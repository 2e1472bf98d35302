"""Weigh the leases that may have made a call: likelihood, not only possession.

Pure: no Redis, no SQL, no clock. The matcher (``attribution.matching``) uses it when a
number's holder got it shortly before the call while an earlier holder lost it shortly
before that; the pool accuracy model uses the same function, so the model and the service
decide alike.

Each candidate lease explains the call in one of two ways:

- it covered the number at the call's moment: an in-lease call, ``call - start`` seconds
  after the lease began (a person rarely dials three seconds after landing);
- it had ended: a call made after the lease, ``call - end`` seconds after it stopped
  covering the number (a visitor who left and dials from memory or the call log).

Their densities (per second) come from ``Delays``, learned from the site's own unambiguous
calls (``attribution.call_delays``) with defaults before there are any. Direct evidence
multiplies in as likelihood ratios (a ``tel:`` click or copy by that session just before
the call, the caller already tied to the visitor, the caller's area against the visit's
location). Weights are calibrated (``CALIBRATION``, ``LIVE_ODDS``) and normalised into
posteriors over the candidates.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

# Histogram buckets, in seconds since the lease began (or ended): [0, 1), then six a decade
# up to about 17 days; later delays fall into the last bucket.
EDGES_S: tuple[float, ...] = (0.0,) + tuple(10 ** (i / 6) for i in range(38))
BUCKETS = len(EDGES_S) - 1

# Evidence, as likelihood ratios P(evidence | this candidate called) / P(evidence | not).
# A tap on a tel: link dials at once, and a copied number is pasted within moments: a touch
# this shortly before the call points at its session. An older one mostly led to a call of
# its own back then (a visit rarely calls twice), so it weighs little.
TOUCH_SOON_MS = 30_000
TOUCH_SKEW_MS = 5_000  # the beacon and the carrier's clocks differ by a little
TOUCH_SOON_LR = 40.0
TOUCH_EARLIER_LR = 1.5  # a number copied earlier in the visit, kept for later perhaps
# Share of the in-lease callers who tap or copy the number, by device, on a site whose
# snippet reports touches (a missing touch from a holder weighs 1 minus this): phones call
# through tel: links, desktops mostly read the number and dial another phone.
TOUCH_EXPECTED = {"mobile": 0.6, "tablet": 0.4, "desktop": 0.1}
TOUCH_EXPECTED_UNKNOWN = 0.3
CALLER_KNOWN_LR = 100.0  # this phone already called from this visitor's visits
# The caller's area against the visit's location: learned per site (``attribution.call_areas``,
# the candidate's ``area_ratio``), within these bounds; these weak constants before a site
# has enough calls, or when only the countries are known (and differ).
AREA_MATCH_LR = 1.5
AREA_MISMATCH_LR = 0.6
AREA_LR_MIN, AREA_LR_MAX = 0.05, 50.0
NO_TOUCH_MIN = 0.05  # a holder who would have touched the number 95% of the time, at most

# Calibration, fitted on the simulator's calls: a grid search for the best log-likelihood of
# the true caller over some 2,300 weighed calls of two traffic models (the default one, and
# the compressed one of tests/test_matching_likelihood.py, whose slow test prints the
# reliability table by confidence bin). It holds on the default model's fit (calls given 0.8
# to 0.9 right 85%, 0.9 and up 97%). On the compressed one the delays barely tell the
# candidates apart; since the simulator has geography and the area ratios are learned
# (``attribution.call_areas``), its weighed calls are calibrated too in bins of 50 calls or
# more (a slow test there checks it; calls given 0.5 to 0.6, fewer, are still overconfident).
# A candidate's weight is (LIVE_ODDS if it held the number at the call else 1) times its
# delay density ** CALIBRATION times its evidence ratios. Raw densities (1.0, 1.0) were
# overconfident (calls given 0.9 were right about 60% of the time): a delay histogram
# separates a young holder from a late caller less well than it claims (visits differ more
# than one histogram of the site says), so the density is tempered and the holder keeps
# prior odds. Evidence ratios are not tempered.
CALIBRATION = 0.4
LIVE_ODDS = 2.0
# Another candidate takes the call from the possession rule's answer only when at least this
# likely (``choose``): on the project's simulator, switching on a closer call was wrong more
# often than right (delays alone separate a young holder from a late caller poorly; strong
# evidence, a touch, a known caller or the caller's area on a site that has learned it, or a
# site whose calls never come seconds after landing, does).
SWITCH_AT = 0.8


def _lognormal_masses(median_s: float, sigma: float) -> tuple[float, ...]:
    """Probability of each bucket under a lognormal delay."""
    def cdf(x: float) -> float:
        if x <= 0:
            return 0.0
        return 0.5 * (1 + math.erf((math.log(x) - math.log(median_s)) / (sigma * math.sqrt(2))))

    masses = [cdf(EDGES_S[i + 1]) - cdf(EDGES_S[i]) for i in range(BUCKETS)]
    masses[-1] += 1 - cdf(EDGES_S[-1])
    return tuple(masses)


# Defaults before a site has calls: in-lease calls a couple of minutes after landing with a
# wide spread (few in the first seconds); calls after the lease mostly within the hour, with a
# tail of hours; a quarter of calls made after the lease. Broad on purpose: they only have to
# be sensible until the site's own calls replace them.
DEFAULT_IN_LEASE = _lognormal_masses(120.0, 1.0)
DEFAULT_AFTER_LEASE = _lognormal_masses(600.0, 1.6)
DEFAULT_AFTER_SHARE = 0.25
FLOOR = 1e-4  # of a bucket's mass: no delay is ever impossible
SURVIVAL_FLOOR = 0.02


@dataclass(frozen=True)
class Candidate:
    """A lease that may have made the call."""

    session_id: str
    started_at_ms: int
    ended_at_ms: int  # last moment the lease covered the number (a live holder: the call time)
    live: bool = False  # held the number at the call's moment
    touched_at_ms: int | None = None  # the snippet's latest tel: click or copy by this session
    caller_known: bool = False  # the caller's number already tied to this visitor
    area_match: bool | None = None  # caller's area vs the visit's location; None: unknown
    # The chance this session would have reported a tel: click or copy had it called while
    # holding the number (the site's snippet sends them; a phone taps links more than a
    # desktop copies); None: unknown, so a missing touch says nothing.
    touch_expected: float | None = None
    # The likelihood ratio of that match or mismatch learned for the site
    # (``call_areas.Areas.ratio``); None: the constants ``AREA_MATCH_LR``, ``AREA_MISMATCH_LR``.
    area_ratio: float | None = None


@dataclass(frozen=True)
class Delays:
    """Learned call delays: log-spaced histograms (probability per bucket of ``EDGES_S``).

    ``in_lease``: seconds from a lease's start to a call made while it covered the number.
    ``after_lease``: seconds from a lease's end to a call made after it. ``after_share``:
    the share of calls made after the lease. ``calls``: how many calls taught it (0: the
    defaults).
    """

    in_lease: tuple[float, ...] = DEFAULT_IN_LEASE
    after_lease: tuple[float, ...] = DEFAULT_AFTER_LEASE
    after_share: float = DEFAULT_AFTER_SHARE
    calls: int = 0
    # Share of leases still covering their number at each bucket's start (a lease's length,
    # first lease to the end of its cover): a holder seen still holding the number at d
    # seconds calls at the in-lease rate of those who last that long. None: not known.
    survival: tuple[float, ...] | None = None
    _in_density: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)
    _after_density: tuple[float, ...] = field(default=(), init=False, repr=False,
                                              compare=False)

    def __post_init__(self):
        if len(self.in_lease) != BUCKETS or len(self.after_lease) != BUCKETS:
            raise ValueError(f"a delay histogram has {BUCKETS} buckets")
        if not 0 < self.after_share < 1:
            raise ValueError("after_share must be strictly between 0 and 1")
        # Per-second densities, computed once: weighing a call is then two lookups.
        object.__setattr__(self, "_in_density", _densities(self.in_lease))
        object.__setattr__(self, "_after_density", _densities(self.after_lease))

    @classmethod
    def learned(cls, in_lease: list[tuple[float, float]], after_lease: list[tuple[float, float]],
                prior_calls: float = 20.0) -> Delays:
        """Delays from observed calls, each (seconds, weight: 1 for a sure one), blended with
        the defaults as ``prior_calls`` calls' worth (a handful of calls cannot make a delay
        impossible)."""
        inside = sum(w for _, w in in_lease)
        after = sum(w for _, w in after_lease)
        after_share = (after + prior_calls * DEFAULT_AFTER_SHARE) / (inside + after + prior_calls)
        return cls(_blend(in_lease, DEFAULT_IN_LEASE, prior_calls),
                   _blend(after_lease, DEFAULT_AFTER_LEASE, prior_calls),
                   after_share, len(in_lease) + len(after_lease))

    def in_lease_density(self, seconds: float) -> float:
        return self._in_density[bucket(seconds)]

    def still_holding(self, seconds: float) -> float:
        """Share of leases lasting at least ``seconds`` (1 when not known)."""
        if self.survival is None:
            return 1.0
        return max(self.survival[bucket(seconds)], SURVIVAL_FLOOR)

    def after_lease_density(self, seconds: float) -> float:
        return self._after_density[bucket(seconds)]


def bucket(seconds: float) -> int:
    return min(max(bisect.bisect_right(EDGES_S, seconds) - 1, 0), BUCKETS - 1)


def _densities(masses: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(masses) or 1.0
    return tuple(max(m / total, FLOOR) / (EDGES_S[i + 1] - EDGES_S[i])
                 for i, m in enumerate(masses))


def _blend(samples: list[tuple[float, float]], prior: tuple[float, ...],
           weight: float) -> tuple[float, ...]:
    counts = [weight * p for p in prior]
    for seconds, sample_weight in samples:
        counts[bucket(seconds)] += sample_weight
    total = sum(counts)
    return tuple(c / total for c in counts)


DEFAULT_DELAYS = Delays()


def explain(candidate: Candidate, call_ms: int, delays: Delays, window_ms: int) -> dict:
    """The candidate's calibrated likelihood (the weight posteriors are made of) and the
    terms it is made of: the delay and its density, the evidence ratios."""
    delay = _delay(candidate, call_ms, delays, window_ms)
    if isinstance(delay, str):
        return {"likelihood": 0.0, "why": delay}
    covered, seconds, base = delay
    terms = {"in_lease_seconds" if covered else "after_lease_seconds": round(seconds, 1),
             "delay_density": base}
    evidence = _evidence(candidate, call_ms, covered)
    return {"likelihood": _weight(base, covered, evidence), **terms, "evidence": evidence}


def likelihood(candidate: Candidate, call_ms: int, delays: Delays, window_ms: int) -> float:
    """``explain``'s likelihood alone (the pool accuracy model asks it millions of times)."""
    delay = _delay(candidate, call_ms, delays, window_ms)
    if isinstance(delay, str):
        return 0.0
    covered, _, base = delay
    return _weight(base, covered, _evidence(candidate, call_ms, covered))


def _delay(candidate: Candidate, call_ms: int, delays: Delays,
           window_ms: int) -> tuple[bool, float, float] | str:
    """Whether the candidate covered the number at the call, the seconds into its lease (or
    since it ended) and their density; or why it cannot have made the call."""
    if candidate.started_at_ms > call_ms:
        return "leased after the call"
    if candidate.live or candidate.ended_at_ms >= call_ms:
        seconds = (call_ms - candidate.started_at_ms) / 1000
        # Of the holders still holding a number this long, the share who call now.
        return True, seconds, (1 - delays.after_share) * delays.in_lease_density(seconds) \
            / delays.still_holding(seconds)
    gap_ms = call_ms - candidate.ended_at_ms
    if gap_ms > window_ms:
        return "ended before the attribution window"
    seconds = gap_ms / 1000
    return False, seconds, delays.after_share * delays.after_lease_density(seconds)


def _evidence(candidate: Candidate, call_ms: int, covered: bool) -> dict:
    """The direct evidence for or against the candidate, as likelihood ratios by name."""
    evidence = {}
    if candidate.touched_at_ms is not None and candidate.touched_at_ms <= call_ms + TOUCH_SKEW_MS:
        soon = call_ms - candidate.touched_at_ms <= TOUCH_SOON_MS
        evidence["touch"] = TOUCH_SOON_LR if soon else TOUCH_EARLIER_LR
    elif covered and candidate.touch_expected is not None:
        # No click or copy from a holder who would often have sent one: less likely theirs.
        evidence["no_touch"] = round(1 - min(candidate.touch_expected, 1 - NO_TOUCH_MIN), 3)
    if candidate.caller_known:
        evidence["caller_known"] = CALLER_KNOWN_LR
    if candidate.area_match is not None:
        evidence["area_match" if candidate.area_match else "area_mismatch"] = _area_ratio(
            candidate)
    return evidence


def _weight(base: float, covered: bool, evidence: dict) -> float:
    """The calibrated weight: what posteriors are made of (see CALIBRATION)."""
    if base <= 0:
        return 0.0
    ratio = LIVE_ODDS if covered else 1.0
    for value in evidence.values():
        ratio *= value
    return base ** CALIBRATION * ratio


def _area_ratio(candidate: Candidate) -> float:
    """The learned ratio of the candidate's area evidence, within bounds; else a constant."""
    if candidate.area_ratio is None:
        return AREA_MATCH_LR if candidate.area_match else AREA_MISMATCH_LR
    return round(min(max(candidate.area_ratio, AREA_LR_MIN), AREA_LR_MAX), 4)


def weigh(candidates: list[Candidate], call_ms: int, delays: Delays,
          window_ms: int) -> list[tuple[Candidate, float]]:
    """Each candidate with its calibrated posterior probability of having made the call,
    best first. A lease begun after the call, or ended more than ``window_ms`` before it,
    gets 0 and never wins; ties go to the live holder, then to the later lease."""
    return rank(candidates, likelihoods(candidates, call_ms, delays, window_ms))


def rank(candidates: list[Candidate], values: list[float]) -> list[tuple[Candidate, float]]:
    """Posteriors from calibrated likelihoods (``likelihoods``), best first (see ``weigh``)."""
    total = sum(values)
    posteriors = [value / total for value in values] if total > 0 else [0.0] * len(candidates)
    order = sorted(range(len(candidates)), key=lambda i: (
        -posteriors[i], not candidates[i].live, -candidates[i].started_at_ms, i))
    return [(candidates[i], posteriors[i]) for i in order]


def choose(candidates: list[Candidate], call_ms: int, delays: Delays, window_ms: int,
           switch_at: float = SWITCH_AT) -> tuple[Candidate, float]:
    """The matcher's decision when it weighs: ``candidates[0]`` is the possession rule's
    answer, and keeps the call unless another candidate's posterior reaches ``switch_at``.
    Returns the lease credited and its posterior (the call's confidence)."""
    best, posterior, _ = _decide(candidates, likelihoods(candidates, call_ms, delays,
                                                         window_ms), switch_at)
    return best, posterior


def _decide(candidates: list[Candidate], values: list[float], switch_at: float = SWITCH_AT
            ) -> tuple[Candidate, float, list[tuple[Candidate, float]]]:
    """``choose`` on the candidates' calibrated likelihoods, already worked out; with every
    candidate's posterior, best first (``rank``)."""
    ranked = rank(candidates, values)
    best, posterior = ranked[0]
    if best is not candidates[0] and posterior < switch_at:
        best = candidates[0]
        posterior = next(p for c, p in ranked if c is best)
    return best, posterior, ranked


def likelihoods(candidates: list[Candidate], call_ms: int, delays: Delays,
                window_ms: int) -> list[float]:
    """Each candidate's calibrated likelihood (``explain``'s)."""
    return [likelihood(c, call_ms, delays, window_ms) for c in candidates]


def survival_of(lengths_s: list[float]) -> tuple[float, ...] | None:
    """``Delays.survival`` from observed lease lengths in seconds (None without any)."""
    if not lengths_s:
        return None
    ordered = sorted(lengths_s)
    return tuple((len(ordered) - bisect.bisect_left(ordered, EDGES_S[i])) / len(ordered)
                 for i in range(BUCKETS))


# Earlier leases whose share of the likelihood is below PLAUSIBLE are no plausible
# candidates: the possession rule's answer stands, exactly as before (confidence included).
# Below PRESCREEN from call delays alone, not even the strongest evidence could lift them
# that far, so none is looked up. The strongest: every ratio for the others at its cap (a
# touch, a known caller, an area match) and every one against the possession rule's answer
# at its floor (a missing touch, an area mismatch), which multiplies their odds by MAX_LIFT.
PLAUSIBLE = 0.05
MAX_LIFT = TOUCH_SOON_LR * CALLER_KNOWN_LR * AREA_LR_MAX / (NO_TOUCH_MIN * AREA_LR_MIN)
_PRESCREEN_ODDS = PLAUSIBLE / (1 - PLAUSIBLE) / MAX_LIFT
PRESCREEN = _PRESCREEN_ODDS / (1 + _PRESCREEN_ODDS)  # about 7e-10


def rivals(first: Candidate, earlier: list[Candidate], call_ms: int,
           window_ms: int) -> list[Candidate]:
    """The leases of ``earlier`` that could have made a call the possession rule gives to
    ``first``: begun before it, stopped covering the number by the time it began, and
    ended inside the attribution window before the call."""
    return [c for c in earlier if c.started_at_ms < first.started_at_ms
            and c.ended_at_ms <= first.started_at_ms and call_ms - c.ended_at_ms <= window_ms]


def share_of_others(contenders: list[Candidate], call_ms: int, delays: Delays,
                    window_ms: int) -> float:
    """The calibrated posterior of every candidate but the first (the possession rule's)
    together; 0 when the first has no likelihood (it is the rule's answer all the same)."""
    return _others(likelihoods(contenders, call_ms, delays, window_ms))


def _others(values: list[float]) -> float:
    """``share_of_others`` from the contenders' likelihoods."""
    return 1 - values[0] / sum(values) if values[0] else 0.0


@dataclass(frozen=True)
class Decision:
    """``contest``'s answer when likelihood decides."""

    contenders: list[Candidate]  # the possession rule's answer first, with their evidence
    scored: list[dict]  # ``explain`` of each contender
    winner: Candidate
    posterior: float
    ranked: list[tuple[Candidate, float]]  # each contender with its posterior, best first


def contest(first: Candidate, rivals_: list[Candidate], call_ms: int, delays: Delays,
            window_ms: int, evidence=None) -> Decision | None:
    """The matcher's decision, shared with the pool accuracy model: None when the possession
    rule's answer ``first`` stands (no rival is plausible), else the contenders (with their
    evidence and likelihoods), the winner and its posterior. ``evidence(contenders)``
    returns them with touches, known callers and areas filled in; it is asked only when a
    rival could become plausible at all, since looking evidence up costs round trips."""
    if not rivals_:
        return None
    contenders = [first, *rivals_]
    if share_of_others(contenders, call_ms, delays, window_ms) < PRESCREEN:
        return None
    if evidence is not None:
        contenders = evidence(contenders)
    scored = [explain(c, call_ms, delays, window_ms) for c in contenders]
    values = [score["likelihood"] for score in scored]
    if _others(values) < PLAUSIBLE:
        return None
    return Decision(contenders, scored, *_decide(contenders, values))
