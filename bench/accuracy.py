#!/usr/bin/env python3
"""Attribution accuracy against pool size, on simulated traffic (issue 13).

Plans ``--days`` of a site's traffic (visits by hour of day, the snippet's heartbeats,
returning visitors, calls during, right after and hours after the visit), plays it through
the real pool scripts, recorder and matcher on a virtual clock, once per pool size, and
prints per size the share of calls credited to the visit that made them, the wrong-visit
credits, the unattributed calls and those lost to exhaustion; the chart goes to
``--out`` (default bench/out/accuracy.png).

Redis: REDIS_URL if set (only keys under a prefix of the run's own are written, and deleted
afterwards), else an embedded Redis. SQL: a fresh database, on the PostgreSQL server of
DATABASE_URL if set, else SQLite; dropped afterwards. Always exits 0: it is a benchmark.

    python bench/accuracy.py [--days 7] [--seed 1] [--sizes 40,60,80 | --multiples 0.6,1,1.8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import redis  # noqa: E402
from harness import app_on_new_database, exit_zero, log  # noqa: E402

from attribution import call_delays, matching  # noqa: E402
from attribution.accuracy import check_on_simulation, format_check  # noqa: E402
from attribution.simulation import (  # noqa: E402
    DEFAULT_MULTIPLES,
    PoolSettings,
    TrafficModel,
    format_phases,
    format_table,
    format_weighed,
    simulate,
    write_chart,
)


def numbers_list(text: str, kind=float) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    defaults_model, defaults_pool = TrafficModel(), PoolSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=7.0, help="virtual days of traffic")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", type=lambda t: numbers_list(t, int),
                        help="pool sizes in numbers, e.g. 40,60,80 (default: --multiples)")
    parser.add_argument("--multiples", type=numbers_list, default=list(DEFAULT_MULTIPLES),
                        help="pool sizes as multiples of the offered load")
    parser.add_argument("--arrivals-per-hour", type=float,
                        default=defaults_model.arrivals_per_hour)
    parser.add_argument("--call-share", type=float, default=defaults_model.call_share)
    parser.add_argument("--visit-median-seconds", type=float,
                        default=defaults_model.visit_median_seconds)
    parser.add_argument("--later-median-seconds", type=float,
                        default=defaults_model.later_median_seconds)
    parser.add_argument("--mobile-share", type=float, default=defaults_model.mobile_share)
    parser.add_argument("--home-state", default=defaults_model.home_state,
                        help="a local site's state (two letters); with --home-share")
    parser.add_argument("--home-share", type=float, default=defaults_model.home_share,
                        help="share of visitors from --home-state (1: a local business)")
    parser.add_argument("--geo-miss-share", type=float, default=defaults_model.geo_miss_share)
    parser.add_argument("--phone-home-share", type=float,
                        default=defaults_model.phone_home_share)
    parser.add_argument("--lease-seconds", type=int, default=defaults_pool.lease_seconds)
    parser.add_argument("--cooldown-seconds", type=int, default=defaults_pool.cooldown_seconds)
    parser.add_argument("--attribution-window-seconds", type=int,
                        default=defaults_pool.attribution_window_seconds)
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the run with the possession-only matcher")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "out"),
                        help="folder for the chart")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    model = TrafficModel(arrivals_per_hour=args.arrivals_per_hour, call_share=args.call_share,
                         visit_median_seconds=args.visit_median_seconds,
                         later_median_seconds=args.later_median_seconds,
                         mobile_share=args.mobile_share, home_state=args.home_state,
                         home_share=args.home_share, geo_miss_share=args.geo_miss_share,
                         phone_home_share=args.phone_home_share)
    settings = PoolSettings(lease_seconds=args.lease_seconds,
                            cooldown_seconds=args.cooldown_seconds,
                            attribution_window_seconds=args.attribution_window_seconds)
    with ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL") or embedded_redis(stack)
        database_url = os.environ.get("DATABASE_URL", "")
        kind = "postgres" if database_url.startswith("postgres") else "sqlite"
        postgres_url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        app = app_on_new_database(stack, kind, postgres_url, REDIS_URL=redis_url)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        stack.callback(client.close)
        log(f"simulating {args.days:g} days on {kind} and {redis_url.split('?')[0]}")
        started = time.monotonic()
        from dni_server.extensions import db

        with app.app_context():
            if kind == "sqlite":
                unsynced(db.engine)
            def play(weigh: bool):
                # The same traffic, matched by possession alone or weighing the candidates;
                # each run learns its delays afresh from its own pools' calls.
                matching.LIKELIHOOD = weigh
                call_delays.forget()
                name = "weighed" if weigh else "possession"
                return simulate(client, db.session, model=model, settings=settings,
                                days=args.days, seed=args.seed, sizes=args.sizes,
                                multiples=args.multiples, progress=lambda r: log(
                                    f"{name}: {r.numbers} numbers: {r.accuracy:.1%}"))

            before = play(False) if args.compare else None
            report = play(True)
            check = check_on_simulation(client, db.session, report)  # the service's size
    if before is not None:
        print("matcher: possession only (before) against weighing candidates (after)")
        print(format_before_after(before, report))
    print(format_table(report))
    print(format_check(check))
    print(format_phases(report))
    print(format_weighed(report))
    print(f"took {time.monotonic() - started:.0f}s")
    chart = write_chart(report, args.out)
    print(f"chart: {chart}" if chart else "chart: skipped (matplotlib is not installed)")


def format_before_after(before, after) -> str:
    """Accuracy per size under both matchers, from one run of the same traffic."""
    lines = ["| numbers | before | after | change | wrong visit before | after |",
             "|---|---|---|---|---|---|"]
    for old, new in zip(before.sizes, after.sizes, strict=True):
        lines.append(f"| {new.numbers} | {old.accuracy:.1%} | {new.accuracy:.1%} | "
                     f"{(new.accuracy - old.accuracy) * 100:+.1f} pts | "
                     f"{old.count('wrong')} | {new.count('wrong')} |")
    return "\n".join(lines)


def unsynced(engine) -> None:
    """A scratch SQLite database need not survive a power cut: no fsync at each commit (the
    simulated worker commits before every call), which would otherwise dominate the run."""
    from sqlalchemy import event

    event.listen(engine, "connect",
                 lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
    engine.dispose()  # connections made from now on get it


def embedded_redis(stack: ExitStack) -> str:
    from dni_server.embedded import embedded_redis_url

    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="dni-accuracy-"))
    return embedded_redis_url(folder)


def main(argv=None) -> int:
    return exit_zero(run, parse_args(argv), "accuracy")


if __name__ == "__main__":
    sys.exit(main())
