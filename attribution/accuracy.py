"""Expected attribution accuracy against pool size, learned from the pool's own traffic.

What a pool saw in a window (``simulation.replay.recorded_traffic``: when visits arrived, how
long each held its number, which visits called and how long after their last renewal) is
bootstrapped: each repetition keeps the observed arrivals and gives each one the (visit
length, call delay, where the visit was located, where its caller's number is from) of a
visit drawn with replacement, on the traffic's own clock, so five minutes of 30-second
leases are modelled as faithfully as a month of 30-minute ones.

The pool is then played as ``pools/lua/lease.lua`` plays it: a lease lapses
``lease_seconds`` after its last renewal, its number goes to the back of the idle queue,
and a visitor gets the number idle longest, unless that one is still cooling down (then
the fallback: the visit's call is lost to exhaustion). Each call is decided by the
matcher's own rule (``credited``): the possession rule, and the likelihood weighing of
``attribution.likelihood`` when ``matching.LIKELIHOOD`` is on, with the caller's area
against each candidate visit's location weighed as the pool's site taught the matcher
(``call_areas``): without it the model judged late callers by their delays alone and,
on a pool that had seen every call, expected about half a point less than the truth.

Above the size at which nobody is ever refused (``Draw.free``) the idle queue is plain
first-in first-out, so the number released ``p``-th is taken by arrival ``size + p``: no
pool is played at all, and a late call is right from the smallest size whose reuse of its
number comes after it. Only sizes below that are played visit by visit. Repetitions are
averaged and seeded, so the same window gives the same answer; where the matcher weighs,
each size still carries Monte Carlo error of its own (its numbers are reused differently),
so the recommended size is read off a line fitted to the curve around it (``_fitted``).
Windows of more than ``MAX_VISITS`` visits are modelled on blocks of that many.

Visitors the pool refused in the window (shown the fallback, never leased) are demand its
lease history hides: they join the arrivals (``refused_arrivals``). The matcher's delays
are the ones it weighs the pool's calls with now (``call_delays``), so the model decides as
the service does; ``Model`` validated against ``replay`` and the simulator in
tests/test_pool_accuracy.py and tests/test_accuracy_acceptance.py.

Known limits: a visitor refused a number is refused for the whole visit (the snippet asks
again at each page view); visits are not split at ``max_lease_seconds``; visits that began
after the window are not there to take numbers from its late callers; the model has no
touches or known callers to weigh; and a late caller the pool credited to the number's next
holder is learned as that holder's in-visit call (the bias of ``replay``), so a pool far
too small looks better than it is. The same goes for calls past the attribution window
to a number leased since: no pool sees them, so the model cannot count them.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass, field

from attribution import call_areas, call_delays, matching
from attribution.call_areas import Areas, Region
from attribution.likelihood import DEFAULT_DELAYS, Candidate, Delays, contest, rivals
from attribution.simulation.replay import RecordedTraffic

MODEL = "bootstrap-fifo-v1"
DEFAULT_TARGET = 0.99
SEED = 13
MAX_VISITS = 40_000  # visits one repetition plays; a longer window is sampled in blocks
WARMUP = 0.05  # share of a block whose calls are not counted (its pool starts empty)
CALL_SAMPLES = 8_000  # calls judged over all repetitions (more repetitions for few calls)
MIN_REPS, MAX_REPS = 6, 40
# ``smallest`` first searches on this share of the repetitions, then on all of them from
# ``AROUND`` times its answer either side.
ROUGH_SHARE, AROUND = 0.25, 0.03
# ``smallest`` reads its answer off a line fitted to the curve this far either side of where
# it crosses the target, through at least this many sizes (``Model._fitted``).
FIT_SPAN, FIT_POINTS = 0.1, 5
PLAYED_REPS = 3  # repetitions played visit by visit for a size where some visitor is refused
WORK = 600_000  # visits played over all repetitions, at most
COOLDOWN_SHARE = 0.9  # of calls after a visit, the share the recommended cool-down covers
# Of the calls a target allows to miss, the share the recommended attribution window may
# leave past it (the rest is for numbers reused before their late callers ring).
WINDOW_MISS_SHARE = 0.25
MAX_WINDOW_S = 30 * 86_400  # the longest window a pool takes (the API's limit)
MAX_LATE_CALLS = 5_000  # late calls looked up one by one, at most
MAX_CENSOR_WEIGHT = 10.0  # a late call seen stands for at most this many (``uncensored``)
# A pool sees its late callers (``sighted``) when this share of its numbers rest at least
# ``SEE_PAST`` times the attribution window before their next lease: a window is judged by
# the calls that come after it, and a pool whose numbers rest only the window credits those
# to the next holder, where they look like that visit's own calls.
SEEN_SHARE = 0.9
SEE_PAST = 2.0
INF = math.inf


@dataclass
class Draw:
    """One bootstrap repetition laid out on the pool's clock (visits by arrival)."""

    arrivals: list[int]
    expiry: list[int] = field(default_factory=list)  # last renewal + lease
    calls: list[tuple[int, int]] = field(default_factory=list)  # (visit, call ms), counted
    rank: list[int] = field(default_factory=list)  # each visit's place in release order
    order: list[int] = field(default_factory=list)  # the visit of each release
    releases: list[int] = field(default_factory=list)  # expiry of each release, in order
    free: int = 1  # smallest size at which no visitor is refused
    played: dict[int, tuple[list, list, list]] = field(
        default_factory=dict)  # size -> (next, previous holder of each visit's number, refused)
    regions: list = field(default_factory=list)  # where each visit was located (None: unknown)
    callers: list = field(default_factory=list)  # where each visit's caller is from


@dataclass
class Estimate:
    """The model's answer for one window."""

    target: float
    current: int
    calls: int
    visits: int
    unmatched_calls: int
    curve: list[dict]
    expected_at_current: float | None
    recommended: int | None
    recommended_cooldown_seconds: int | None
    reasoning: str
    span_ms: int
    model: str = MODEL
    window_seconds: int = 0  # the attribution window the curve assumes
    recommended_window_seconds: int | None = None  # None: the pool's own loses no call
    rest_seconds: int | None = None  # how long most numbers rested (None: most never reused)
    numbers_to_see: int | None = None  # a size whose numbers rest past the window (``sighted``)
    between: Between | None = None  # the sizes this window's calls cannot tell from the answer

    def as_dict(self) -> dict:
        return {"accuracy_target": self.target,
                "attribution_window_seconds": self.window_seconds,
                "recommended_attribution_window_seconds": self.recommended_window_seconds,
                "expected_at_current_size": self.expected_at_current,
                "recommended_numbers": self.recommended, "curve": self.curve,
                "calls": self.calls, "visits": self.visits,
                "recommended_cooldown_seconds": self.recommended_cooldown_seconds,
                "rest_seconds": self.rest_seconds,
                "numbers_to_see_late_calls": self.numbers_to_see,
                "recommended_range": dataclasses.asdict(self.between) if self.between else None,
                "reasoning": self.reasoning, "model": self.model}


@dataclass
class Between:
    """The pool sizes whose expected accuracy is within ``error`` of the target (``high``
    None: none reaches target + error)."""

    low: int
    high: int | None
    error: float

    def words(self) -> str:
        """The range in words: "from 541 to 843", or "from 541 up" (none that far above)."""
        return f"from {self.low} " + (f"to {self.high}" if self.high is not None else "up")


def answer_range(model: Model, target: float, calls: int, best: int) -> Between:
    """How finely a window's calls place the answer: the sizes the model expects within one
    standard error of ``target`` on that many calls.

    The model learns the late callers, who decide the last percent, from the window alone;
    a week of some 600 calls has a handful of callers hours after their visit, and the next
    week as many again or twice as many (one standard error of 99% on 600 calls is 0.4
    points). Near the target the curve is flat (15% more numbers add 0.1 to 0.3 points), so
    an answer learned from one week is good to about a fifth either way; more days narrow it."""
    error = math.sqrt(target * (1 - target) / calls)
    # Read on a quarter of the repetitions: a range this wide needs no finer, and the full
    # model would more than double the answer's time (6 to 9 s on a week of 600 calls).
    rough = model.rough()
    low = rough._crossing(target - error)
    high = rough._crossing(target + error) if target + error < 1 else None
    return Between(min(low or best, best), None if high is None else max(high, best),
                   round(error, 4))


def _quantile(values, share: float):
    """The smallest of ``values`` that at least ``share`` of them do not exceed."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


# -- the matcher's decision -------------------------------------------------------------------


def credited(call_ms: int, leases: list[tuple[int, int]], window_ms: int,
             delays: Delays | None, evidence=None) -> int | None:
    """Which of the number's leases (``(start, covered until)``, oldest first, all begun by
    the call) the matcher credits with the call, or None; ``delays`` None: possession only.

    The matcher's rule on plain values: the lease covering the call, else the last one if
    it ended inside the window (possession); then the matcher's own decision against its
    rivals (``likelihood.rivals`` and ``likelihood.contest``, which ``matching`` calls too).
    ``evidence(contenders)``, as ``contest`` takes it, fills in what is known of them (the
    caller's area, ``area_evidence``; candidates are named by their index in ``leases``).
    The model has no touches or known callers: evidence only the service sees."""
    first = max(0, len(leases) - matching.CANDIDATES)  # the matcher reads the latest few
    last = len(leases) - 1
    start, covered = leases[last]
    live = call_ms <= covered
    if not live and call_ms - covered > window_ms:
        return None
    if delays is None:
        return last
    holder = Candidate(str(last), start, call_ms if live else covered, live=live)
    decided = contest(holder, rivals(holder, [Candidate(str(i), *leases[i])
                                             for i in range(first, last)], call_ms, window_ms),
                      call_ms, delays, window_ms, evidence)
    if decided is None or decided.winner is holder:
        return last
    return int(decided.winner.session_id)


def area_evidence(areas: Areas | None, caller: Region | None, regions: list,
                  known: dict | None = None):
    """``credited``'s evidence: each contender's visit location (``regions``, by the
    contender's name) against the caller's area, weighed as the matcher weighs it
    (``call_areas.area_evidence``); ``known`` keeps each pair of areas' answer, since the
    model asks the same few pairs again and again."""
    known = {} if known is None else known

    def evidence(contenders: list[Candidate]) -> list[Candidate]:
        out = []
        for c in contenders:
            pair = (caller, regions[int(c.session_id)])
            if pair not in known:
                known[pair] = call_areas.area_evidence(areas, *pair)
            match, ratio = known[pair]
            # The model's candidates carry no touches or known callers: only these fields.
            out.append(c if match is None else Candidate(
                c.session_id, c.started_at_ms, c.ended_at_ms, c.live, area_match=match,
                area_ratio=ratio))
        return out
    return evidence


def learned_delays(traffic: RecordedTraffic) -> Delays:
    """The delays the matcher would learn from this traffic's calls (``call_delays.learn``:
    each call against its own lease, seconds after it began or after it ended)."""
    lease_ms = traffic.settings.lease_seconds * 1000
    in_lease, after = [], []
    for duration, delay in zip(traffic.durations_ms, traffic.delays_ms, strict=True):
        if delay is None:
            continue
        if delay <= lease_ms:
            in_lease.append((max(0, duration + delay) / 1000, 1.0))
        else:
            after.append(((delay - lease_ms) / 1000, 1.0))
    if len(in_lease) + len(after) < call_delays.MIN_CALLS:
        return DEFAULT_DELAYS
    return Delays.learned(in_lease, after)


# -- one repetition ------------------------------------------------------------------------------


def draw(traffic: RecordedTraffic, rng: random.Random, cooldown_ms: int,
         calls_wanted: int) -> Draw:
    """A bootstrap repetition: observed arrivals, resampled (length, delay) pairs; at most
    ``calls_wanted`` of its calls counted (a random subset: each is judged on its own)."""
    lease_ms = traffic.settings.lease_seconds * 1000
    arrivals = traffic.arrivals_ms
    nowhere = [None] * len(traffic.durations_ms)
    profiles = list(zip(traffic.durations_ms, traffic.delays_ms,
                        traffic.regions or nowhere, traffic.caller_regions or nowhere,
                        strict=True))
    first, warm = 0, 0
    if len(arrivals) > MAX_VISITS:  # a block of the window, its first calls not counted
        first = rng.randrange(len(arrivals) - MAX_VISITS + 1)
        warm = int(MAX_VISITS * WARMUP)
        arrivals = arrivals[first:first + MAX_VISITS]
    out = Draw(list(arrivals))
    calls = []
    for index, ((duration, delay, region, caller), at) in enumerate(
            zip(rng.choices(profiles, k=len(arrivals)), arrivals, strict=True)):
        out.expiry.append(at + duration + lease_ms)
        out.regions.append(region)
        out.callers.append(caller)
        if delay is not None and index >= warm:
            calls.append((index, max(at, at + duration + delay)))
    out.calls = rng.sample(calls, calls_wanted) if len(calls) > calls_wanted else calls
    expiry = out.expiry
    out.order = sorted(range(len(arrivals)), key=expiry.__getitem__)  # stable: ties by arrival
    out.rank = [0] * len(arrivals)
    for position, visit in enumerate(out.order):
        out.rank[visit] = position
    releases = out.releases = [expiry[v] for v in out.order]
    # Arrival i takes the i-th number of the queue (the N never used, then the releases in
    # order): the releases cooled by its arrival must number more than i - N.
    out.free = max([1] + [i - bisect.bisect_right(releases, at - cooldown_ms) + 1
                          for i, at in enumerate(out.arrivals)])
    return out


def play(d: Draw, size: int, cooldown_ms: int) -> tuple[list, list, list]:
    """Play a pool of ``size`` numbers visit by visit, as lease.lua does (for sizes below
    ``d.free``): each visit's number's next and previous holder, and who was refused."""
    if size in d.played:
        return d.played[size]
    n = len(d.arrivals)
    # The idle queue holds each number's last holder (-1: never leased), idle since that
    # holder's expiry. Leases end in expiry order (d.order), each after its visit arrived,
    # so no heap is needed.
    idle: deque[int] = deque([-1] * size)
    following: list[int | None] = [None] * n
    previous: list[int | None] = [None] * n
    refused = [False] * n
    order, expiry, ended = d.order, d.expiry, 0
    push, pop = idle.append, idle.popleft
    next_end = expiry[order[0]] if n else 0
    for visit, at in enumerate(d.arrivals):
        while next_end <= at:
            holder = order[ended]
            if not refused[holder]:
                push(holder)
            ended += 1
            next_end = expiry[order[ended]] if ended < n else INF
        if not idle:
            refused[visit] = True
            continue
        last = idle[0]
        if last >= 0:
            if at - expiry[last] < cooldown_ms:
                refused[visit] = True
                continue
            following[last], previous[visit] = visit, last
        pop()
    d.played[size] = (following, previous, refused)
    return d.played[size]


def _links(d: Draw, size: int, cooldown_ms: int):
    """(next holder, previous holder, refused) of each visit's number at ``size``."""
    if size < d.free:
        following, previous, refused = play(d, size, cooldown_ms)
        return following.__getitem__, previous.__getitem__, refused
    n, rank_, order = len(d.arrivals), d.rank, d.order

    def nxt(v):
        q = size + rank_[v]
        return q if q < n else None

    def prv(v):
        return order[v - size] if v >= size else None

    return nxt, prv, None


def _chain(d: Draw, visit: int, call_ms: int, nxt,
           prv) -> tuple[list[tuple[int, int]], int, list[int]]:
    """The number's leases begun by the call (oldest first), the caller's place in them and
    the visit of each."""
    before = []
    p = prv(visit)
    while p is not None and len(before) < matching.CANDIDATES - 1:
        before.append(p)
        p = prv(p)
    after = []
    n = nxt(visit)
    while n is not None and d.arrivals[n] <= call_ms:
        after.append(n)
        n = nxt(n)
    visits = before[::-1] + [visit] + after
    return [(d.arrivals[v], d.expiry[v]) for v in visits], len(before), visits


def outcome(d: Draw, visit: int, call_ms: int, links, window_ms: int,
            delays: Delays | None, areas: Areas | None = None, known: dict | None = None) -> str:
    """right, wrong or exhausted: the call of ``visit`` with the pool's ``links``, weighing
    (``delays``) with the caller's area as the site taught it (``areas``; ``known``: the
    answers for pairs of areas so far, as ``area_evidence`` keeps them)."""
    nxt, prv, refused = links
    if refused is not None and refused[visit]:
        return "exhausted"
    following = nxt(visit)
    if following is None or d.arrivals[following] > call_ms:  # nobody leased it since
        before = prv(visit)
        if delays is None or before is None or call_ms - d.expiry[before] > window_ms:
            expiry = d.expiry[visit]  # the only candidate: possession
            return "right" if call_ms <= expiry or call_ms - expiry <= window_ms else "wrong"
    elif delays is None:
        return "wrong"  # possession: the later lease has it
    leases, own, visits = _chain(d, visit, call_ms, nxt, prv)
    evidence = area_evidence(areas, d.callers[visit], [d.regions[v] for v in visits], known) \
        if d.regions else None  # where visits and callers are from is not known
    return "right" if credited(call_ms, leases, window_ms, delays, evidence) == own else "wrong"


def smallest_right(d: Draw, visit: int, call_ms: int, window_ms: int) -> float:
    """By possession: the smallest size from ``d.free`` up whose pool credits this call
    right (INF: none). Where nobody is refused the number released ``p``-th goes to arrival
    ``size + p``, so from ``size`` = (arrivals by the call) - p it is not leased again
    before the call, and a larger pool only leases it later."""
    expiry = d.expiry[visit]
    if call_ms <= expiry:
        return d.free  # held the number when calling
    if call_ms - expiry > window_ms:
        return INF  # past the attribution window: unattributed whatever the size
    return max(d.free, bisect.bisect_right(d.arrivals, call_ms) - d.rank[visit])


# -- the estimate ------------------------------------------------------------------------------


class Model:
    """The bootstrap repetitions of one window, asked for accuracy at any size."""

    def __init__(self, traffic: RecordedTraffic, *, seed: int = SEED,
                 likelihood: bool | None = None, delays: Delays | None = None,
                 reuse_cooling: bool = False, lost_share: float = 0.0,
                 areas: Areas | None = None):
        """``likelihood`` None: as ``matching.LIKELIHOOD``; ``delays``: the ones the matcher
        weighs with (None: learned from ``traffic``, as the matcher learns from calls);
        ``lost_share``: of all calls, those no size can credit (past the window);
        ``areas``: what the site learned of its callers' areas (None: the weak constants,
        as the matcher uses before it has learned any)."""
        self.traffic = traffic
        self.kept = 1 - lost_share
        self.window_ms = traffic.settings.attribution_window_seconds * 1000
        self.cooldown_ms = 0 if reuse_cooling else traffic.settings.cooldown_seconds * 1000
        weigh = matching.LIKELIHOOD if likelihood is None else likelihood
        self.delays = (delays or learned_delays(traffic)) if weigh else None
        self.areas = areas
        self.area_pairs: dict = {}  # (caller's area, visit's) -> area_evidence's answer
        calls = len(traffic.call_delays_ms)
        block = min(traffic.visits, MAX_VISITS)
        calls_per_rep = max(1.0, calls * block / max(traffic.visits, 1))
        reps = min(MAX_REPS, max(MIN_REPS, math.ceil(CALL_SAMPLES / calls_per_rep)))
        reps = max(2, min(reps, WORK // max(block, 1)))
        rng = random.Random(seed)
        wanted = max(1, math.ceil(CALL_SAMPLES / reps))
        self.draws = [draw(traffic, rng, self.cooldown_ms, wanted) for _ in range(reps)] \
            if calls else []
        # Per repetition: the smallest right size of each counted call, sorted.
        # Possession: per repetition, the smallest right size of each counted call, sorted
        # (a call, once right, stays right in a larger pool). Weighing is not monotone so:
        # every size is judged call by call.
        self.needs = {id(d): sorted(smallest_right(d, v, t, self.window_ms)
                                    for v, t in d.calls)
                      for d in self.draws} if self.delays is None else {}
        self.known: dict[int, tuple[float, float]] = {}
        self.free = max((d.free for d in self.draws), default=1)

    def at(self, size: int) -> tuple[float, float]:
        """(expected accuracy, share of calls lost to exhaustion) at ``size`` numbers.

        Below the size where nobody is refused, the first ``PLAYED_REPS`` repetitions only
        (each is played visit by visit there; exhaustion varies little between them)."""
        if size in self.known:
            return self.known[size]
        draws = self.draws if size >= self.free else self.draws[:PLAYED_REPS]
        accuracy = exhausted = 0.0
        counted = 0
        for d in draws:
            if not d.calls:
                continue
            counted += 1
            if size >= d.free and self.delays is None:
                accuracy += bisect.bisect_right(self.needs[id(d)], size) / len(d.calls)
                continue
            links = _links(d, size, self.cooldown_ms)
            outcomes = [outcome(d, v, t, links, self.window_ms, self.delays, self.areas,
                                self.area_pairs) for v, t in d.calls]
            accuracy += outcomes.count("right") / len(outcomes)
            exhausted += outcomes.count("exhausted") / len(outcomes)
        self.known[size] = (self.kept * accuracy / counted, self.kept * exhausted / counted) \
            if counted else (self.kept, 0.0)
        return self.known[size]

    def ceiling(self) -> float:
        """The accuracy no pool size exceeds (calls past the window, or beyond every pool)."""
        return self.at(self._top())[0]

    def smallest(self, target: float) -> int | None:
        """The fewest numbers whose expected accuracy reaches ``target`` (None: none does):
        where the curve crosses it (``_crossing``); when the model weighs late callers,
        read off a straight line fitted to the curve around that size (``_fitted``). By
        possession a call once right stays right in a larger pool, so that curve rises
        step by step without noise and its crossing is exact."""
        crossing = self._crossing(target)
        if crossing is None or self.delays is None:
            return crossing
        return self._fitted(crossing, target)

    def _crossing(self, target: float) -> int | None:
        """The first size at or above ``target`` that bisection finds.

        Accuracy grows with the pool, as a whole if not call by call, so it is bisected:
        between sizes found by stepping out from the answer of the same search on a few of
        the repetitions (each size costs as much as its calls), or galloping up from the
        size where nobody is refused (when there are too few repetitions to take some)."""
        if not self.draws:
            return None
        top = self._top()
        if self.at(top)[0] < target:
            return None
        rough = self.rough()
        start = rough._crossing(target) if rough is not self else None
        lo, hi = self._around(start, target, top) if start else self._gallop(target, top)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.at(mid)[0] >= target:
                hi = mid
            else:
                lo = mid
        return hi

    def rough(self) -> Model:
        """The model on ``ROUGH_SHARE`` of its repetitions (itself when there are too few
        to take some): a quick first look, finer than a wide answer needs."""
        few = max(1, round(len(self.draws) * ROUGH_SHARE))
        return self.on(self.draws[:few]) if few < len(self.draws) else self

    def _top(self) -> int:
        """A size with a number for every visit (nobody is refused, no number reused)."""
        return max(self.free, max((len(d.arrivals) for d in self.draws), default=0) + 1)

    def _fitted(self, crossing: int, target: float) -> int:
        """Where a straight line through the curve within ``FIT_SPAN`` of ``crossing``
        reaches ``target``.

        Each size's accuracy carries the Monte Carlo error of the calls judged (about 0.1
        points at 8,000 calls), and where the pool weighs late callers every size reuses
        its numbers differently, so that error is fresh at each size: on one window the
        curve read 99.02% at 540 numbers, 98.97% at 545 and 99.14% at 546, and bisection
        answers whichever size the noise lifts first. A line through sizes either side (the
        ones already asked, and ``FIT_POINTS`` evenly spread) averages it out. The line
        answers within the span; where it does not rise the crossing stands."""
        lo = max(1, math.floor(crossing * (1 - FIT_SPAN)))
        hi = min(self._top(), math.ceil(crossing * (1 + FIT_SPAN)))
        if hi - lo < 2:
            return crossing
        spread = {round(lo + i * (hi - lo) / (FIT_POINTS - 1)) for i in range(FIT_POINTS)}
        sizes = sorted(spread | {s for s in self.known if lo <= s <= hi})
        slope, intercept = statistics.linear_regression(sizes, [self.at(s)[0] for s in sizes])
        if slope <= 0:
            return crossing
        return min(hi, max(lo, math.ceil((target - intercept) / slope)))

    def on(self, draws: list[Draw]) -> Model:
        """The same model on some of its repetitions (each keeps the pools it played)."""
        view = copy.copy(self)
        view.draws, view.known = draws, {}
        return view

    def _gallop(self, target: float, top: int) -> tuple[int, int]:
        """Sizes below and at ``target``, galloping up from where nobody is refused."""
        if self.at(self.free)[0] >= target:
            return 0, self.free
        lo, hi = self.free, self.free
        while self.at(hi)[0] < target:
            lo, hi = hi, min(top, max(hi + 1, round(hi * 1.25)))
        return lo, hi

    def _around(self, start: int, target: float, top: int) -> tuple[int, int]:
        """Sizes below and at ``target``, stepping out from ``start`` by ever larger steps
        (size 0 counts as below)."""
        step = max(1, round(start * AROUND))
        if self.at(start)[0] >= target:
            hi, lo = start, max(0, start - step)
            while lo and self.at(lo)[0] >= target:
                step *= 2
                hi, lo = lo, max(0, lo - step)
            return lo, hi
        lo, hi = start, min(top, start + step)
        while self.at(hi)[0] < target:
            step *= 2
            lo, hi = hi, min(top, hi + step)
        return lo, hi


def curve_sizes(current: int, recommended: int | None, free: int, points: int = 12) -> list[int]:
    """Sizes for the curve: around the current and recommended sizes, both included."""
    marks = [s for s in (current, recommended, free) if s]
    lo = max(1, math.floor(min(marks) * 0.5))
    hi = max(lo + 1, math.ceil(max(marks) * 1.4))
    step = max(1, (hi - lo) / (points - 1))
    return sorted({round(lo + i * step) for i in range(points)} | set(s for s in (
        current, recommended) if s))


def recommended_cooldown(traffic: RecordedTraffic) -> tuple[int | None, str]:
    """A cool-down that keeps most post-visit callers' numbers unused until they call."""
    lease_s = traffic.settings.lease_seconds
    after = [d / 1000 for d in traffic.call_delays_ms if d > 0]
    if not after:
        return None, "No call came after its visit ended, so the cool-down can stay as it is."
    q = _quantile(after, COOLDOWN_SHARE)
    cooldown = max(0, math.ceil((q - lease_s) / 5) * 5)
    cooldown = min(cooldown, traffic.settings.attribution_window_seconds)
    return cooldown, (
        f"{COOLDOWN_SHARE:.0%} of the {len(after)} calls made after a visit came within "
        f"{q:.0f} s of its last renewal; the lease covers {lease_s} s of that, so a "
        f"{cooldown} s cool-down keeps their numbers unused until they call.")


@dataclass
class Widened:
    """The window's traffic as the model plays it: its late callers tied to their visits,
    the callers it could not see added back, at the attribution window they need."""

    traffic: RecordedTraffic  # at ``window_seconds``
    window_seconds: int
    recommended: bool  # the pool's own window loses more calls than the target allows
    attached: int  # late calls tied to a visit of the window
    missed: int  # callers added back whose numbers went to others before they called
    longest_s: float  # the longest wait after a lease ended that the window covers


def visit_ends(traffic: RecordedTraffic) -> list[int]:
    """When each recorded visit ended, in the order of its lengths and delays."""
    if traffic.ends_ms:
        return traffic.ends_ms
    return [traffic.start_ms + a + d for a, d in zip(traffic.arrivals_ms, traffic.durations_ms,
                                                     strict=True)]


def tie_late_calls(traffic: RecordedTraffic,
                   late: list[tuple[str, int]]) -> tuple[RecordedTraffic, int]:
    """``late``: (session, call ms) of calls that came past the window to a number nobody
    had leased since (``late_calls``): by possession its caller, had the window been
    longer. Each is tied to its visit, one call per visit as recorded; how many were."""
    index = {session: i for i, session in enumerate(traffic.sessions)}
    delays = list(traffic.delays_ms)
    ends = visit_ends(traffic)
    attached = 0
    for session, call_ms in sorted(late, key=lambda pair: pair[1]):
        i = index.get(session)
        if i is None or delays[i] is not None:
            continue
        delays[i] = call_ms - ends[i]
        attached += 1
    return dataclasses.replace(traffic, delays_ms=delays), attached


def uncensored(traffic: RecordedTraffic, seed: int = SEED) -> tuple[RecordedTraffic, int]:
    """The traffic with the late callers a pool cannot see added back, and how many.

    A pool sees a call made ``d`` after a visit only if the visit's number was not leased
    again by then (else the call went to the next holder, or past its window), and only if
    ``d`` has passed by the pool's latest call (``observed_until_ms``). So
    each call seen at ``d`` stands for 1 / (share of visits still observable at ``d``) calls
    (inverse probability weighting, at most ``MAX_CENSOR_WEIGHT``): the missing ones are
    given to silent visits whose numbers went to someone else before ``d``, the callers it
    missed. Unchanged when the reuse times are not known."""
    if not traffic.reused_after_ms:
        return traffic, 0
    horizon = traffic.observed_until_ms or (
        traffic.start_ms + traffic.span_ms + traffic.settings.attribution_window_seconds * 1000)
    ends = visit_ends(traffic)
    seen_for = [min(r, horizon - e) for r, e in zip(traffic.reused_after_ms, ends, strict=True)]
    observable = sorted(seen_for)
    total = len(observable)
    delays = list(traffic.delays_ms)
    silent = sorted((i for i, d in enumerate(delays) if d is None), key=seen_for.__getitem__)
    silent_seen = [seen_for[i] for i in silent]
    rng = random.Random(seed)
    added = 0
    for d in sorted(d for d in traffic.delays_ms if d is not None and d > 0):
        still = (total - bisect.bisect_right(observable, d)) / total
        extra = min(1 / max(still, 1 / total), MAX_CENSOR_WEIGHT) - 1
        count = int(extra) + (rng.random() < extra - int(extra))
        for _ in range(count):
            blind = bisect.bisect_left(silent_seen, d)  # silent visits not observable at d
            if not blind:
                break
            j = rng.randrange(blind)
            delays[silent.pop(j)] = d
            silent_seen.pop(j)
            added += 1
    return dataclasses.replace(traffic, delays_ms=delays), added


def needed_window(traffic: RecordedTraffic, unattached: int,
                  target: float) -> tuple[int, float] | None:
    """The attribution window the traffic's calls need and the longest wait after a lease
    it covers; None when the traffic's own loses no more calls than ``target`` allows it
    to: every wait after a lease ended but the longest few, as many as
    ``WINDOW_MISS_SHARE`` of the misses the target allows."""
    lease_ms = traffic.settings.lease_seconds * 1000
    waits = sorted((d - lease_ms for d in traffic.delays_ms if d is not None and d > lease_ms),
                   reverse=True)
    allowed = int((1 - target) * (len(traffic.call_delays_ms) + unattached) * WINDOW_MISS_SHARE)
    if len(waits) <= allowed:
        return None
    needed_s = math.ceil(waits[allowed] / 1000)
    step = 3600 if needed_s > 3600 else 60  # a whole hour, or a whole minute
    window_s = min(MAX_WINDOW_S, math.ceil(needed_s / step) * step)
    if window_s <= traffic.settings.attribution_window_seconds:
        return None
    return window_s, waits[allowed] / 1000


def widen(traffic: RecordedTraffic, late: list[tuple[str, int]], lost_calls: int,
          target: float, seed: int = SEED, own_window: bool = False) -> Widened:
    """``traffic`` as the model plays it (``tie_late_calls``, ``uncensored``), at the
    attribution window it needs (``needed_window``), or at its own (always, with
    ``own_window``)."""
    tied, attached = tie_late_calls(traffic, late)
    corrected, missed = uncensored(tied, seed)
    need = None if own_window else needed_window(corrected, max(0, lost_calls - attached),
                                                 target)
    if need is None:
        return Widened(corrected, traffic.settings.attribution_window_seconds, False,
                       attached, missed, 0.0)
    settings = dataclasses.replace(traffic.settings, attribution_window_seconds=need[0])
    return Widened(dataclasses.replace(corrected, settings=settings), need[0], True,
                   attached, missed, need[1])


def sighted(traffic: RecordedTraffic, current: int,
            window_s: int) -> tuple[float | None, int | None]:
    """How long the pool's numbers rested before their next lease (``SEEN_SHARE`` of them
    at least this long; None: not known), and the size whose numbers would rest
    ``SEE_PAST`` times the attribution window (None: the pool's own do, or it cannot be
    told).

    A caller who rings later than their number rested reaches its next holder, and the
    call looks like that holder's own: no pool sees it as late, so a model learned there
    misses every call past the rest. Those past the window matter most: they are lost at
    every size, and only a pool that sees some of them can tell the window is too short
    (on a pool resting just the window, two of a week's three calls past a 24 h window went
    to the next holder unseen, and the model expected 99.9% where the pool credited 99.5%).
    Numbers are reused in release order, so a number's cycle (held by a visit, then
    resting) lasts about as long as the pool takes to lease all its numbers once, in
    proportion to its size; the visit's part does not grow. So the size scaled by
    (rest wanted + visit) / (rest + visit) rests as long as wanted (the visit's median
    length)."""
    if not traffic.reused_after_ms:
        return None, None
    rest_ms = _quantile(traffic.reused_after_ms, 1 - SEEN_SHARE)
    wanted_ms = SEE_PAST * window_s * 1000
    if not current or rest_ms >= wanted_ms:
        return rest_ms / 1000, None
    held_ms = _quantile(traffic.durations_ms, 0.5)
    return rest_ms / 1000, math.ceil(current * (wanted_ms + held_ms)
                                     / max(rest_ms + held_ms, 1000))


def _duration(seconds: float) -> str:
    """A window or a wait, in the largest unit that keeps it readable."""
    for unit, size in (("days", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.0f} s"


def estimate(traffic: RecordedTraffic, current: int, target: float = DEFAULT_TARGET, *,
             seed: int = SEED, likelihood: bool | None = None, delays: Delays | None = None,
             reuse_cooling: bool = False, lost_calls: int = 0,
             late: list[tuple[str, int]] = (), areas: Areas | None = None,
             own_window: bool = False) -> Estimate:
    """Expected accuracy against pool size for ``traffic``, and the size for ``target``.

    ``lost_calls``: calls to the pool's numbers that no visit could be credited with (past
    the attribution window): wrong at every size at the pool's window. ``late``: those of
    them whose number nobody had leased since (``late_calls``). When they need a longer
    window (``widen``), the curve and the recommended size assume it, and the answer
    recommends it; the accuracy expected now stays the pool's, at its own window.
    ``own_window``: the curve and the size at the pool's own window (its late calls missed
    at every size), as autoscale sizes a pool and as ``bench/accuracy_spread.py`` judges."""
    window_s = traffic.settings.attribution_window_seconds
    if not traffic.call_delays_ms:
        return Estimate(target, current, 0, traffic.visits, traffic.unmatched_calls, [], None,
                        None, None,
                        "No call in this period was credited to a visit of the pool, so "
                        "there is nothing to measure accuracy from.", traffic.span_ms,
                        window_seconds=window_s)
    options = {"seed": seed, "likelihood": likelihood, "delays": delays,
               "reuse_cooling": reuse_cooling, "areas": areas}
    wide = widen(traffic, list(late), lost_calls, target, seed, own_window)
    modelled = wide.traffic
    lost_share = _lost_share(modelled, max(0, lost_calls - wide.attached))
    # Now: the pool's own window; the curve: the window the calls need.
    now = Model(dataclasses.replace(modelled, settings=traffic.settings),
                lost_share=lost_share, **options)
    model = Model(modelled, lost_share=lost_share, **options) if wide.recommended else now
    window_s = wide.window_seconds
    calls = len(modelled.call_delays_ms)
    cooldown, why_cooldown = recommended_cooldown(modelled)
    best = model.smallest(target)
    between = answer_range(model, target, calls, best) if best is not None else None
    sizes = curve_sizes(current, best, model.free)
    curve = []
    for size in sizes:
        accuracy, exhausted = model.at(size)
        curve.append({"numbers": size, "expected_accuracy": round(accuracy, 4),
                      "exhausted_share": round(exhausted, 4)})
    at_current = round(now.at(current)[0], 4) if current else None
    matcher = "weighing late callers by likelihood" if model.delays else "by possession"
    if best is None:
        ceiling = model.ceiling()
        verdict = (f"No pool size reaches {target:.1%}: even with a number per visit about "
                   f"{ceiling:.1%} of calls are credited right (the rest came after the "
                   f"{window_s} s attribution window, to numbers leased since, or to none "
                   "the pool can tell).")
    else:
        verdict = (f"Playing the {traffic.visits} visits and {calls} calls of this period "
                   f"{len(model.draws)} times through pools of each size ({matcher}), "
                   f"{best} numbers credit {target:.1%} of calls to the visit that made them"
                   + (f" with a {_duration(window_s)} attribution window"
                      if wide.recommended else "")
                   + f"; the pool has {current}"
                   + (f", which credits about {at_current:.1%}." if at_current is not None
                      else "."))
    if between is not None:
        verdict += (f" The {calls} calls it learned from measure accuracy to about "
                    f"{between.error * 100:.1f} points either way, so they cannot tell {best} "
                    f"from any size {between.words()}: a longer period narrows that.")
    if best is not None and at_current is not None and at_current < target:
        verdict += (" While the pool is below its target, some late callers are credited to "
                    "their number's next holder and look like that visit's calls here, so "
                    "this is a lower bound: grow the pool to it, then ask again.")
    refused = traffic.visits - len(traffic.durations_ms)
    if refused:
        verdict += (f" The {refused} visitors the pool refused (shown the fallback) are "
                    "counted among the visits, with the lengths and calls of the others.")
    if wide.missed:
        verdict += (f" {wide.missed} more late callers are counted than the pool saw: their "
                    "numbers went to other visitors before they called.")
    if wide.recommended:
        verdict += (f" {lost_calls} calls came after the pool's "
                    f"{_duration(traffic.settings.attribution_window_seconds)} attribution "
                    f"window, {wide.attached} of them to a number nobody had leased since a "
                    "visit of this period: a window of "
                    f"{_duration(window_s)} (recommended) covers all but the latest few "
                    f"(up to {_duration(wide.longest_s)} after the lease ended), and the "
                    "curve assumes it.")
    elif lost_calls:
        verdict += (f" {lost_calls} calls came after the attribution window and count as "
                    "missed at every size.")
    rest_s, to_see = sighted(traffic, current, window_s)
    if to_see is not None:
        verdict += (f" {1 - SEEN_SHARE:.0%} of its numbers were leased again within "
                    f"{_duration(rest_s)} of their visit, less than {SEE_PAST:g} times the "
                    f"{_duration(window_s)} window: a caller who rang later may have reached "
                    "the number's next holder and look like theirs here, and calls past the "
                    "window are lost at every size, so this answer may be too small. "
                    f"Run about {to_see} numbers for a while "
                    "and ask again to see those callers.")
    return Estimate(target, current, calls, traffic.visits, traffic.unmatched_calls, curve,
                    at_current, best, cooldown, f"{verdict} {why_cooldown}", traffic.span_ms,
                    window_seconds=window_s,
                    recommended_window_seconds=window_s if wide.recommended else None,
                    rest_seconds=None if rest_s is None or math.isinf(rest_s) else round(rest_s),
                    numbers_to_see=to_see, between=between)


def refused_arrivals(db, pool_id: int, start_ms: int, end_ms: int) -> list[int]:
    """When each visitor the pool refused in the window (shown the fallback, never given a
    number there) first asked: demand a pool too small hides from its lease history."""
    from sqlalchemy import func, select

    from pools.models import Lease, PoolExhaustion

    leased = select(Lease.session_id).where(Lease.pool_id == pool_id,
                                            Lease.started_at_ms >= start_ms,
                                            Lease.started_at_ms < end_ms)
    rows = db.execute(select(func.min(PoolExhaustion.at_ms)).where(
        PoolExhaustion.pool_id == pool_id, PoolExhaustion.at_ms >= start_ms,
        PoolExhaustion.at_ms < end_ms, PoolExhaustion.session_id.not_in(leased))
        .group_by(PoolExhaustion.session_id))
    return sorted(at - start_ms for (at,) in rows)


def late_calls(db, pool_id: int, start_ms: int, end_ms: int,
               window_ms: int) -> tuple[int, list[tuple[str, int]]]:
    """Calls to the pool's numbers credited to no visit because they came past the
    attribution window: how many of the window's, and for every one to a number whose last
    lease began in the window (nobody had leased it since), that lease's session and the
    call's time (``widen`` ties them to their visits).

    A lost call counts as the window's from ``window_ms`` after it began to as long after
    it ended (the time a call carries, not its visit, says which); one tied to a visit of
    the window counts whenever it came."""
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, select

    from attribution.models import Call
    from pools.models import Lease

    lost = db.execute(select(Call.to_number, Call.started_at).where(
        Call.pool_id == pool_id, Call.session_id.is_(None), Call.method == "unattributed",
        Call.started_at >= datetime.fromtimestamp((start_ms + window_ms) / 1000, UTC))
        .order_by(Call.started_at).limit(MAX_LATE_CALLS)).all()
    last_lease = select(Lease.session_id, Lease.started_at_ms).where(
        Lease.pool_id == pool_id, Lease.number == bindparam("number"),
        Lease.started_at_ms <= bindparam("at")).order_by(
        Lease.started_at_ms.desc()).limit(1)  # the matcher's own index serves it
    counted, late = 0, []
    for number, started_at in lost:
        at_ms = int(started_at.timestamp() * 1000)
        lease = db.execute(last_lease, {"number": number, "at": at_ms}).first()
        if lease is not None and start_ms <= lease.started_at_ms < end_ms:
            late.append((lease.session_id, at_ms))
            counted += 1
        elif at_ms < end_ms + window_ms:
            counted += 1
    return counted, late


def with_refused(traffic: RecordedTraffic, refused_ms: list[int]) -> RecordedTraffic:
    """``traffic`` with the refused visitors' arrivals among its own: each repetition gives
    them a recorded visit's (length, delay) like any other arrival."""
    if not refused_ms:
        return traffic
    return dataclasses.replace(traffic, arrivals_ms=sorted(traffic.arrivals_ms + refused_ms))


def _pool_window(db, pool, start_ms: int, end_ms: int) -> tuple[RecordedTraffic, dict]:
    """The pool's window as the model reads it: its traffic (refused visitors included) and
    ``estimate``'s other arguments (the matcher's delays, calls lost, reuse on cooling)."""
    from attribution.simulation.replay import recorded_traffic

    traffic = with_refused(recorded_traffic(db, pool.id, start_ms, end_ms),
                           refused_arrivals(db, pool.id, start_ms, end_ms))
    lost, late = late_calls(db, pool.id, start_ms, end_ms,
                            pool.attribution_window_seconds * 1000)
    # The delays the matcher weighs this pool's calls with now.
    delays = call_delays.delays_for(db, pool.id, pool.site_id, end_ms) \
        if matching.LIKELIHOOD else None
    # And what the site taught it of its callers' areas.
    areas = call_areas.areas_for(db, pool.site_id, pool.publisher, end_ms) \
        if matching.LIKELIHOOD and pool.site_id is not None else None
    return traffic, {"delays": delays, "lost_calls": lost, "late": late, "areas": areas,
                     "reuse_cooling": pool.exhaustion_policy == "reuse_cooling"}


def pool_accuracy(db, pool, start_ms: int, end_ms: int, size: int,
                  target: float = DEFAULT_TARGET, *, own_window: bool = False) -> dict:
    """The ``accuracy`` part of pool health: the model on the pool's traffic in the window.
    ``own_window``: sized at the attribution window the pool has (calls past it count as
    missed at every size), not at the one its calls need."""
    traffic, options = _pool_window(db, pool, start_ms, end_ms)
    return estimate(traffic, size, target, own_window=own_window, **options).as_dict()


def pool_model(db, pool, start_ms: int, end_ms: int) -> Model | None:
    """The model of the pool's window, to ask at any size (``at``, ``smallest``: autoscale);
    None when no call of the window was credited to a visit (nothing to learn from)."""
    traffic, options = _pool_window(db, pool, start_ms, end_ms)
    if not traffic.call_delays_ms:
        return None
    lost = options.pop("lost_calls")
    options.pop("late")  # autoscale sizes the pool at the window it has
    return Model(traffic, lost_share=_lost_share(traffic, lost), **options)


def _lost_share(traffic: RecordedTraffic, lost_calls: int) -> float:
    """Of all the window's calls, the share no size can credit (past the window)."""
    calls = len(traffic.call_delays_ms) + traffic.unmatched_calls
    return min(lost_calls / calls, 1.0) if lost_calls and calls else 0.0


CHECK_ROUNDS = 6  # times the check grows the pool to the answer and asks again, at most
# Weeks of the same traffic model the check measures the answer on (the one the service
# learned from and more, each planned with a seed of its own): the answer is an expected
# accuracy, and one week of some 600 calls measures it within about 0.4 points only.
TRUTH_WEEKS = 4
WEEK_SEEDS = 1_000  # the check's other weeks are seeds report.seed + k * WEEK_SEEDS


def check_on_simulation(redis, db, report, target: float = DEFAULT_TARGET) -> dict:
    """The service's recommendation for a simulation (``simulation.simulate``'s report),
    checked against the simulator itself (issue 13's criteria).

    The service answers ``pool_accuracy`` on the window of a pool that credited most calls
    right (the largest simulated one if it reached ``target``, else one three times its
    size: a pool crediting late callers to the next holder teaches the model too few late
    calls; the runner stores each call as ingest would). As the answer advises an operator,
    the pool is then set to the attribution window asked for and grown to the recommended
    size, or to the size that sees its late callers, and asked again (``CHECK_ROUNDS`` at
    most), until the answer is settled: given on a pool that sees its late callers, at the
    window it asks for, and not growing by more than 5% past that pool. A pool too small
    hides the late callers whose numbers it reused, so the pool never shrinks on the way
    (the operator shrinks it to the settled answer). The simulator plays
    the same traffic at the final recommendation and at the largest size the criteria rule
    out (the recommendation must be at most 1.15x the smallest size measuring
    ``target``), both at the recommended window, and so ``TRUTH_WEEKS`` - 1 more runs of
    the same traffic model: the criteria are judged on the mean of those weeks."""
    import dataclasses
    import secrets

    from sqlalchemy import select

    from attribution.simulation import START_MS, forget, free_block
    from attribution.simulation.model import plan
    from attribution.simulation.runner import run_size
    from pools.models import Pool

    schedule = plan(report.model, report.settings, days=report.days, seed=report.seed,
                    start_ms=START_MS)
    window = report.settings.attribution_window_seconds
    measured = {(r.numbers, window): r.accuracy for r in report.sizes}
    prefix = f"dnisim-{secrets.token_hex(4)}"

    def play(size: int, window_s: int, week=schedule):
        settings = dataclasses.replace(report.settings, attribution_window_seconds=window_s)
        result = run_size(redis, db, week, settings, size, prefix=prefix,
                          number_block=free_block(db))
        if week is schedule:
            measured[(size, window_s)] = result.accuracy
        return result

    rounds = []
    try:
        learned = report.sizes[-1]
        if learned.accuracy < target:
            learned = play(3 * learned.numbers, window)
        answer = recommended = None
        for _ in range(CHECK_ROUNDS):
            pool = db.scalars(select(Pool).where(Pool.name == f"simulated {learned.numbers}")
                              .order_by(Pool.id.desc())).first()
            answer = pool_accuracy(db, pool, START_MS, START_MS + schedule.span_ms,
                                   learned.numbers, target)
            previous, recommended = recommended, answer["recommended_numbers"]
            to_see = answer["numbers_to_see_late_calls"]
            rounds.append({"numbers": learned.numbers, "window": window,
                           "accuracy": learned.accuracy, "recommended": recommended,
                           "recommended_window": answer["attribution_window_seconds"],
                           "to_see": to_see})
            grows = recommended is not None and recommended > learned.numbers and not (
                previous and recommended <= 1.05 * previous)
            if recommended is None or (to_see is None and not grows
                                       and answer["attribution_window_seconds"] <= window):
                break  # asked on a pool that sees its late callers, at the window it needs
            # Not settled: keep a pool that sees (never smaller than this one), at the window
            # asked for, and ask again; shrink to the answer only once it is settled.
            window = answer["attribution_window_seconds"]
            learned = play(max(recommended, to_see or 0, learned.numbers), window)
        below = math.ceil(recommended / 1.15) - 1 if recommended else None
        weeks = {size: [] for size in (recommended, below) if size}
        for size in weeks:
            if (size, window) not in measured:
                play(size, window)
            weeks[size].append(measured[(size, window)])
        for k in range(1, TRUTH_WEEKS) if weeks else ():
            week = plan(report.model, report.settings, days=report.days,
                        seed=report.seed + k * WEEK_SEEDS, start_ms=START_MS)
            for size in weeks:
                weeks[size].append(play(size, window, week).accuracy)
    finally:
        forget(redis, prefix)
    mean = {size: sum(values) / len(values) for size, values in weeks.items()}
    at, at_below = mean.get(recommended), mean.get(below)
    holds = recommended is not None and at >= target and (not below or at_below < target)
    return {"target": target, "learned_from": rounds[0]["numbers"],
            "learned_accuracy": rounds[0]["accuracy"], "rounds": rounds,
            "recommended": recommended, "window": window, "expected": next(
                (p["expected_accuracy"] for p in answer["curve"]
                 if p["numbers"] == recommended), None),
            "measured": at, "below": below, "measured_below": at_below, "holds": holds,
            "weeks": weeks, "answer": answer}


def format_check(check: dict) -> str:
    """``check_on_simulation``'s answer: each round asked, then the criteria."""
    lines = []
    for r in check["rounds"]:
        answer = (f"{r['recommended']} numbers, a {r['recommended_window']} s window"
                  if r["recommended"] is not None else "none")
        seeing = (f"; its numbers rest less than {SEE_PAST:g}x that window, {r['to_see']} "
                  "would show its late callers" if r["to_see"] else "")
        lines.append(f"asked on the {r['numbers']}-number pool ({r['window']} s window, it "
                     f"credited {r['accuracy']:.1%} of calls right): {answer}{seeing}")
    if check["recommended"] is None:
        lines.append(f"recommended for {check['target']:.0%}: none "
                     f"({check['answer']['reasoning']})")
        return "\n".join(lines)
    weeks = check["weeks"]

    def each(size: int) -> str:
        return ", ".join(f"{value:.1%}" for value in weeks[size])

    below = (f"; at {check['below']} numbers (the recommendation / 1.15) "
             f"{check['measured_below']:.2%} ({each(check['below'])})" if check["below"] else "")
    between = Between(**check["answer"]["recommended_range"])
    lines.append(f"recommended for {check['target']:.0%}: {check['recommended']} numbers with "
                 f"a {check['window']} s attribution window (model {check['expected']:.2%}; "
                 f"its calls place it {between.words()}); "
                 f"measured over {len(weeks[check['recommended']])} weeks of this traffic "
                 f"model (the first the one it learned from): "
                 f"{check['measured']:.2%} ({each(check['recommended'])}){below}")
    lines.append(f"criteria on the mean of those weeks (>= {check['target']:.0%} at the "
                 "recommendation, at most 1.15x the smallest size measuring it): "
                 + ("hold" if check["holds"] else "DO NOT HOLD"))
    return "\n".join(lines)
