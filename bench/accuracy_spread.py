#!/usr/bin/env python3
"""How finely one week of calls places the pool size for an accuracy target (issue 13).

For each of several weeks of the same traffic model (``--seeds``, and ``--weeks`` per seed
at seed + k * 1,000, as the accuracy check draws its other weeks), the week is played
through the real pool scripts, recorder and matcher on a pool of ``--learn-size`` numbers
(far above the load, so it sees its late callers), and the service is asked for the size
that credits ``--target`` of calls right, as the health API answers it, at the pool's
attribution window (``pool_accuracy(own_window=True)``). The same week is then played at
each of ``--sizes`` to measure it.

It prints each week's accuracy per size, the accuracy of all weeks' calls together (the
truth), the smallest size whose truth reaches the target (read between the sizes measured)
and the criteria's band (from that size to 1.15 times it), then per week the service's
answer and range, the size reaching the target on that week alone (read the same way), and
whether the answer lands in the band, and in that week's own. A week of the default model
carries about 600 calls, so it measures accuracy near 99% to about 0.4 points either way;
this shows what that leaves of a size. Always exits 0: it is a benchmark.

    python bench/accuracy_spread.py [--seeds 1,2] [--weeks 2] [--days 7] [--window-hours 40]
                                    [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import redis  # noqa: E402
from accuracy import embedded_redis, numbers_list, unsynced  # noqa: E402
from harness import exit_zero, log  # noqa: E402

from attribution import call_delays  # noqa: E402
from attribution.accuracy import WEEK_SEEDS, Between, pool_accuracy  # noqa: E402
from attribution.simulation import START_MS, forget, free_block, scratch_database  # noqa: E402
from attribution.simulation.model import PoolSettings, TrafficModel, plan  # noqa: E402
from attribution.simulation.runner import PoolRun  # noqa: E402

BAND = 1.15  # the criteria: at most this many times the smallest size measuring the target


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=lambda t: numbers_list(t, int), default=[1, 2])
    parser.add_argument("--weeks", type=int, default=2, help="weeks per seed")
    parser.add_argument("--days", type=float, default=7.0, help="virtual days of each week")
    parser.add_argument("--window-hours", type=float, default=40.0,
                        help="the pools' attribution window")
    parser.add_argument("--learn-size", type=int, default=6000,
                        help="numbers of the pool the service learns from")
    parser.add_argument("--sizes", type=lambda t: numbers_list(t, int),
                        default=[500, 560, 620, 680, 740, 800, 900],
                        help="pool sizes each week is measured at")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="weeks played side by side")
    parser.add_argument("--json", help="also write every week's figures to this file")
    parser.add_argument("--report", help="only print the report of a --json file")
    args = parser.parse_args(argv)
    if not 1 <= args.learn_size <= 10_000:
        parser.error("--learn-size: a simulated pool has 1 to 10,000 numbers")
    return args


def crossing(sizes: list[int], accuracy: dict[int, float], target: float) -> float | None:
    """The size where accuracy, read on straight lines between the sizes measured, first
    reaches ``target`` (None: none measured does)."""
    below = None
    for size in sizes:
        if accuracy[size] >= target:
            if below is None:
                return size
            a, b = accuracy[below], accuracy[size]
            return below + (size - below) * (target - a) / (b - a)
        below = size
    return None


def play_week(seed: int, args: argparse.Namespace) -> dict:
    """One week, on a Redis and a scratch SQLite database of its own: the service's answer
    learned on the big pool, and the week measured at each size (right calls, all calls)."""
    settings = PoolSettings(attribution_window_seconds=round(args.window_hours * 3600))
    schedule = plan(TrafficModel(), settings, days=args.days, seed=seed, start_ms=START_MS)
    prefix = f"dnispread-{seed}"
    with ExitStack() as stack:
        client = redis.Redis.from_url(os.environ.get("REDIS_URL") or embedded_redis(stack),
                                      decode_responses=True)
        stack.callback(client.close)
        stack.callback(forget, client, prefix)
        db = stack.enter_context(scratch_database())
        unsynced(db.get_bind())
        call_delays.forget()

        def run(size: int) -> PoolRun:
            return PoolRun(client, db, schedule, settings, size, prefix=prefix,
                           number_block=free_block(db))

        learning = run(args.learn_size)
        learned = learning.run()
        asked = time.monotonic()
        answer = pool_accuracy(db, learning.pool, START_MS, START_MS + schedule.span_ms,
                               args.learn_size, args.target, own_window=True)
        took = time.monotonic() - asked
        measured = {}
        for size in args.sizes:
            result = run(size).run()
            measured[size] = (result.count("right"), len(result.calls))
    log(f"seed {seed}: {len(learned.calls)} calls, answer {answer['recommended_numbers']}")
    return {"seed": seed, "calls": len(learned.calls), "learned": learned.accuracy,
            "answer": answer, "took": took, "measured": measured}


def own_size(first: float | None, known: bool, sizes: list[int]) -> str:
    if first is None:
        return f"past {sizes[-1]}"
    return f"{first:.0f}" if known else f"{sizes[0]} or fewer"


def report(weeks: list[dict], args) -> str:
    sizes, target = args.sizes, args.target
    lines = ["| week (seed) | calls | " + " | ".join(str(s) for s in sizes)
             + " | its own size for target | answer | its range | in band | in its own |",
             "|---|---|" + "---|" * len(sizes) + "---|---|---|---|---|"]
    pooled = {s: (sum(w["measured"][s][0] for w in weeks),
                  sum(w["measured"][s][1] for w in weeks)) for s in sizes}
    truth = {s: right / calls if calls else 1.0 for s, (right, calls) in pooled.items()}
    smallest = crossing(sizes, truth, target)
    low, high = (smallest, smallest * BAND) if smallest else (None, None)
    answers, inside, inside_own, judged = [], 0, 0, 0
    for w in weeks:
        own = {s: right / calls if calls else 1.0 for s, (right, calls) in w["measured"].items()}
        first = crossing(sizes, own, target)
        best = w["answer"]["recommended_numbers"]
        span = w["answer"].get("recommended_range")
        in_band = best is not None and low is not None and low <= best <= high
        # A week at the target from the smallest size measured has its own size below it,
        # somewhere: its own band is not known.
        known = first is not None and own[sizes[0]] < target
        in_own = known and best is not None and first <= best <= first * BAND
        inside, inside_own, judged = inside + in_band, inside_own + in_own, judged + known
        if best is not None:
            answers.append(best)
        lines.append(f"| {w['seed']} | {w['calls']} | "
                     + " | ".join(f"{own[s]:.2%}" for s in sizes)
                     + f" | {own_size(first, known, sizes)} | {best} | "
                     + (Between(**span).words() if span else "-")
                     + f" | {'yes' if in_band else 'no'} | "
                     + f"{('yes' if in_own else 'no') if known else '?'} |")
    calls = sum(w["calls"] for w in weeks)
    lines.append(f"| all {len(weeks)} weeks | {calls} | "
                 + " | ".join(f"{truth[s]:.2%}" for s in sizes) + " | | | | | |")
    if smallest is None:
        lines.append(f"no size measured reaches {target:.0%} on all weeks together")
        return "\n".join(lines)
    lines.append(f"truth: {target:.0%} from about {smallest:.0f} numbers, so the criteria's "
                 f"band is {low:.0f} to {high:.0f}")
    if answers:
        quartiles = statistics.quantiles(answers, n=4) if len(answers) > 1 else answers * 3
        lines.append(f"answers: {min(answers)} to {max(answers)}, median "
                     f"{statistics.median(answers):g}, middle half {quartiles[0]:.0f} to "
                     f"{quartiles[2]:.0f}; {inside} of {len(weeks)} in the band, "
                     f"{sum(a < low for a in answers)} below, "
                     f"{sum(a > high for a in answers)} above; judged on the week it learned "
                     f"from alone (its own size to 1.15 times it), {inside_own} of the {judged} "
                     "whose own size the sizes measured place")
    covered = sum(1 for w in weeks if (span := w["answer"].get("recommended_range"))
                  and span["low"] <= smallest <= (span["high"] or float("inf")))
    lines.append(f"ranges holding {smallest:.0f}: {covered} of {len(weeks)}; the answer took "
                 f"a median {statistics.median(w['took'] for w in weeks):.1f} s")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    if args.report:  # weeks played before
        weeks = json.loads(Path(args.report).read_text())
        for week in weeks:
            week["measured"] = {int(size): tuple(v) for size, v in week["measured"].items()}
        args.sizes = sorted(weeks[0]["measured"])
    else:
        seeds = [seed + k * WEEK_SEEDS for seed in args.seeds for k in range(args.weeks)]
        with ProcessPoolExecutor(max_workers=args.jobs) as workers:  # each week on its own
            weeks = list(workers.map(play_week, seeds, [args] * len(seeds)))
    print(f"{len(weeks)} weeks of {args.days:g} days, {args.window_hours:g} h attribution "
          f"window, learned on {args.learn_size} numbers, target {args.target:.0%}")
    print(report(weeks, args))
    if not args.report:
        print(f"took {time.monotonic() - started:.0f}s with {args.jobs} jobs")
    if args.json and not args.report:
        Path(args.json).write_text(json.dumps(weeks, indent=1))


def main(argv=None) -> int:
    return exit_zero(run, parse_args(argv), "accuracy spread")


if __name__ == "__main__":
    sys.exit(main())
