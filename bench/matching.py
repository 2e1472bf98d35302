"""How long matching a call to a visit takes as the lease history grows.

Builds a lease history of 10,000, 100,000 and 1,000,000 leases over 1,000 pool numbers
(on SQLite and on PostgreSQL), then matches calls at random numbers and times and prints
p50/p99 per size and the growth from the smallest to the largest history.
Targets (issue 4): p99 under 5 ms, growth under 1.5x. Most calls here find an earlier lease
of their number inside the attribution window, so the likelihood matcher (issue 13) weighs
them: the share weighed is printed. ``--possession`` times the possession rule alone.

    python bench/matching.py [--db sqlite|postgres|both] [--sizes 10000,100000,1000000]
                             [--possession]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
import uuid

import sqlalchemy as sa
import sqlalchemy.orm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from attribution import matching  # noqa: E402
from attribution.matching import match_call  # noqa: E402
from bench.harness import app_on_new_database  # noqa: E402
from dni_server.extensions import db  # noqa: E402
from pools.models import Lease, Pool, PoolNumber, Site  # noqa: E402

NUMBERS = 1000
LEASE_MS = 300_000
SPACING_MS = 600_000  # a lease every 10 minutes per number, half of them idle time
BASE_MS = 1_700_000_000_000
PG_BASE = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fictional(i: int) -> str:
    return f"+1650{200 + i // 10000:03d}{i % 10000:04d}"


def build_history(session, total: int) -> None:
    """One site, one pool of NUMBERS numbers, ``total`` leases spread over them."""
    site = Site(key=f"site_bench_{uuid.uuid4().hex[:8]}", name="bench", domains=[],
                keyword_params=[])
    session.add(site)
    session.flush()
    pool = Pool(site_id=site.id, name="bench", target="+18005550100",
                destination="+12125550199", fallback="+18005550100")
    session.add(pool)
    session.flush()
    session.execute(sa.insert(PoolNumber), [
        {"pool_id": pool.id, "number": fictional(i)} for i in range(NUMBERS)])
    per_number = total // NUMBERS
    batch = []
    for round_ in range(per_number):
        start = BASE_MS + round_ * SPACING_MS
        for i in range(NUMBERS):
            begun = start + (i * 97) % SPACING_MS // 2  # numbers do not all turn over together
            batch.append({"pool_id": pool.id, "number": fictional(i),
                          "session_id": f"s{round_}-{i}", "started_at_ms": begun,
                          "last_renewed_at_ms": begun, "expires_at_ms": begun + LEASE_MS,
                          "ended_at_ms": begun + LEASE_MS, "end_reason": "expired"})
        if len(batch) >= 50_000:
            session.execute(sa.insert(Lease), batch)
            batch = []
    if batch:
        session.execute(sa.insert(Lease), batch)
    session.commit()
    return per_number


WEIGHED = {"calls": 0, "weighed": 0}  # calls matched, and those weighed between candidates


def time_matches(session, per_number: int, samples: int, rng: random.Random) -> list[float]:
    span = per_number * SPACING_MS
    timings = []
    for _ in range(samples):
        number = fictional(rng.randrange(NUMBERS))
        at = BASE_MS + rng.randrange(span)
        started = time.perf_counter_ns()
        match = match_call(session, number, at)
        timings.append((time.perf_counter_ns() - started) / 1e6)
        assert match.method in ("session", "session_expired", "unattributed")
        WEIGHED["calls"] += 1
        WEIGHED["weighed"] += match.confidence not in (0.0, 0.6, 1.0)
    return timings


def run(engine_name: str, sizes: list[int], samples: int, rounds: int) -> list[dict]:
    """Build every size's history first, then measure them in interleaved rounds, so that
    load from elsewhere on the machine falls on every size alike."""
    stack = contextlib.ExitStack()
    built = {}
    with stack:
        for size in sizes:
            app = app_on_new_database(stack, engine_name, PG_BASE)
            context = app.app_context()
            context.push()
            started = time.perf_counter()
            per_number = build_history(db.session, size)
            seconds = time.perf_counter() - started
            if engine_name == "postgres":
                db.session.execute(sa.text("ANALYZE"))
                db.session.commit()
            # A plain session on this database's engine: several databases stay open at once.
            session = sa.orm.Session(bind=db.engine)
            db.session.remove()
            context.pop()
            built[size] = (app, session, per_number, seconds)
            print(f"  {engine_name:8} {size:>9,} leases built in {seconds:.1f} s", flush=True)
        timings = {size: [] for size in sizes}
        rng = random.Random(7)
        for size in sizes:  # warm each database's caches once
            app, session, per_number, _ = built[size]
            time_matches(session, per_number, 200, rng)
        for _ in range(rounds):
            for size in sizes:
                app, session, per_number, _ = built[size]
                timings[size] += time_matches(session, per_number, samples // rounds, rng)
        results = []
        for size in sizes:
            ordered = sorted(timings[size])
            p50 = statistics.median(ordered)
            p99 = ordered[int(len(ordered) * 0.99) - 1]
            results.append({"db": engine_name, "leases": size, "p50_ms": p50, "p99_ms": p99,
                            "build_s": built[size][3]})
            print(f"  {engine_name:8} {size:>9,} leases  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms",
                  flush=True)
        for size in sizes:
            built[size][1].close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--possession", action="store_true",
                        help="the possession rule alone (the matcher before issue 13)")
    args = parser.parse_args()
    matching.LIKELIHOOD = not args.possession
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"matching a call to the lease history ({NUMBERS:,} numbers, {args.samples} calls "
          "per size)")
    for engine_name in engines:
        results = run(engine_name, sizes, args.samples, args.rounds)
        first, last = results[0], results[-1]
        growth = last["p99_ms"] / first["p99_ms"]
        print(f"  {engine_name}: p99 at {last['leases']:,} = {last['p99_ms']:.3f} ms "
              f"(target < 5 ms: {'PASS' if last['p99_ms'] < 5 else 'ABOVE'}); growth "
              f"{first['leases']:,} -> {last['leases']:,} = {growth:.2f}x "
              f"(target < 1.5x: {'PASS' if growth < 1.5 else 'ABOVE'}); weighed "
              f"{WEIGHED['weighed']:,} of {WEIGHED['calls']:,} calls", flush=True)
        WEIGHED.update(calls=0, weighed=0)


if __name__ == "__main__":
    main()
