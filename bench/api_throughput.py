#!/usr/bin/env python3
"""Snippet API throughput against a bare Flask endpoint, measured in one run (issue 2).

Starts everything it needs (a fresh database, its own Redis database, the service and the
bare app under gunicorn with the same settings), drives each endpoint with ``wrk`` for the
same time and connection count, and prints requests/s, p50/p99 latency and the ratio of
each snippet endpoint to the bare one:

    heartbeat    >= 0.7 x bare      POST /v1/sessions/<id>/heartbeat (renews a lease)
    new session  >= 0.5 x bare      POST /v1/sessions (a new visit: parse, classify, lease)

Measurements alternate (bare, heartbeat, new, ..., bare) and the medians are compared, so
that a slow patch of the machine does not land on one endpoint only. Every process it
starts is stopped again, also on Ctrl-C or an error; the database it created is dropped
and its Redis database flushed.

    .venv/bin/python bench/api_throughput.py                 # PostgreSQL, 10 s per run
    .venv/bin/python bench/api_throughput.py --db sqlite --seconds 5 --json
    REDIS_URL="unix:///tmp/redis.sock?db=12" .venv/bin/python bench/api_throughput.py --no-floor

This is a benchmark, not a test: it exits 0 whether or not the targets are met (1 only
when the measurement itself is invalid: errors, non-2xx answers, fallbacks).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    LANDING_URL,
    REFERRER,
    USER_AGENTS,
    BenchPool,
    CpuMeter,
    Gunicorn,
    bench_result,
    bench_setting,
    interrupt,
    log,
    machine_info,
    migrate,
    start_sessions,
    write_lua,
    wrk_output,
)

TARGETS = {"heartbeat": 0.7, "new_session": 0.5}
# Issue 14: the floor (bare + one EVALSHA, --floor) is the right yardstick for the service.
FLOOR_TARGETS = {"heartbeat": 0.9, "new_session": 0.8}
# The pool counter each endpoint must move once per answer with a number.
COUNTS = {"heartbeat": "renewals", "floor_renew": "renewals",
          "new_session": "leases", "floor_lease": "leases"}
KINDS = ("bare", "floor", "floor_renew", "floor_lease", "heartbeat", "new_session")


@dataclass
class Run:
    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    fallbacks: int
    unavailable: int  # of the fallbacks: Redis too slow to answer (the guard's timeout)
    socket_errors: int
    other_cpu: float = 0.0  # cores used by processes that are not part of the benchmark
    cpu_us: float = 0.0  # gunicorn CPU (master + workers) per answered request
    worker_restarts: int = 0
    server_check: str = ""


def wrk(server: Gunicorn, script: Path, seconds: float, args) -> dict:
    return bench_result(wrk_output(server.port, script, seconds, args.connections,
                                   args.wrk_threads))


def measure(kind: str, server: Gunicorn, prepare: Callable[[], Path], args, pool: BenchPool,
            cpu: CpuMeter) -> Run:
    """A warm-up (discarded), then the measured run; checks the server did the real work.

    ``prepare`` readies what the run needs and returns its wrk script.
    """
    if args.quiet_wait > 0:
        cpu.wait_quiet(args.quiet_limit, args.quiet_wait)
    script = prepare()
    boots = server.log_count("Booting worker")
    before = pool.stats()
    warm = wrk(server, script, args.warmup, args) if args.warmup > 0 else None
    start = cpu.snapshot()
    r = wrk(server, script, args.seconds, args)
    end = cpu.snapshot()
    other = cpu.other_cores(start, end)
    cpu_us = cpu.group_seconds(start, end, server.proc.pid) / max(1, r["requests"]) * 1e6
    after = pool.stats()
    answered = r["requests"] + (warm["requests"] if warm else 0)
    fallbacks = r["fallbacks"] + (warm["fallbacks"] if warm else 0)
    unavailable = r["unavailable"] + (warm["unavailable"] if warm else 0)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("renewals", "leases", "exhausted")}
    # The pool's own counters must move once per answer with a number (up to one more per
    # connection: wrk does not count the requests still in flight when it stops).
    counter = COUNTS.get(kind)
    check = {"renewals": f"renewals +{delta['renewals']:,}",
             "leases": f"leases +{delta['leases']:,}, exhausted +{delta['exhausted']}",
             }.get(counter, "")
    moved = delta[counter] if counter else None
    leased = answered - fallbacks
    if moved is not None and not leased <= moved <= leased + 2 * args.connections:
        check += f" (MISMATCH: {leased:,} answers with a number)"
    run = Run(kind=kind, rps=r["requests"] / (r["duration_us"] / 1e6),
              p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000, requests=r["requests"],
              non_2xx=r["non_2xx"] + (warm["non_2xx"] if warm else 0), fallbacks=fallbacks,
              unavailable=unavailable,
              socket_errors=sum(r[k] for k in ("connect_errors", "read_errors",
                                                 "write_errors", "timeouts")),
              other_cpu=other, cpu_us=cpu_us, worker_restarts=server.log_count("Booting worker") - boots,
              server_check=check)
    log(f"  {kind:12s} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
        f"  non-2xx {run.non_2xx}  fallbacks {run.fallbacks} ({run.unavailable} unavailable)"
        f"  socket errors {run.socket_errors}"
        f"  server CPU {cpu_us:.0f} us/req  other CPU {other:.2f} cores"
        f"  worker restarts {run.worker_restarts}  {check}")
    return run


# -- the run -------------------------------------------------------------------------------


@dataclass
class Summary:
    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    runs: int
    ratio: float | None = None
    floor_ratio: float | None = None  # req/s over the floor's (with --floor)
    floor_target: float | None = None
    floor_verdict: str = ""
    cpu_ratio: float | None = None  # bare CPU per request / this one's: less noisy
    target: float | None = None
    verdict: str = ""
    non_2xx: int = 0
    fallbacks: int = 0
    socket_errors: int = 0
    other_cpu: float = 0.0  # the most any of its runs saw
    cpu_us: float = 0.0  # median gunicorn CPU per request


@dataclass
class Results:
    settings: dict
    machine: dict
    runs: list[Run] = field(default_factory=list)
    discarded: list[Run] = field(default_factory=list)  # runs repeated: the machine was busy
    summary: list[Summary] = field(default_factory=list)
    valid: bool = True


def summarise(runs: list[Run]) -> list[Summary]:
    """Medians per endpoint; ratios against the median of the bare runs and, when it was
    measured, of the floor runs."""
    out = []
    for kind in KINDS:
        mine = [r for r in runs if r.kind == kind]
        if not mine:
            continue
        out.append(Summary(
            kind=kind, rps=statistics.median(r.rps for r in mine),
            p50_ms=statistics.median(r.p50_ms for r in mine),
            p99_ms=statistics.median(r.p99_ms for r in mine), runs=len(mine),
            non_2xx=sum(r.non_2xx for r in mine), fallbacks=sum(r.fallbacks for r in mine),
            socket_errors=sum(r.socket_errors for r in mine),
            other_cpu=max(r.other_cpu for r in mine),
            cpu_us=statistics.median(r.cpu_us for r in mine)))
    bare, bare_cpu = out[0].rps, out[0].cpu_us
    floor = next((s.rps for s in out if s.kind == "floor"), None)
    for s in out:
        s.ratio = s.rps / bare
        if floor:
            s.floor_ratio = s.rps / floor
            s.floor_target = FLOOR_TARGETS.get(s.kind)
            if s.floor_target is not None:
                s.floor_verdict = "PASS" if s.floor_ratio >= s.floor_target else "BELOW"
        s.cpu_ratio = bare_cpu / s.cpu_us if s.cpu_us else None
        s.target = TARGETS.get(s.kind)
        if s.target is not None:
            s.verdict = "PASS" if s.ratio >= s.target else "BELOW"
    return out

def benchmark(args) -> Results:
    results = Results(settings={k: v for k, v in vars(args).items() if k != "json"},
                      machine=machine_info())
    with ExitStack() as stack:
        setting = bench_setting(stack, args.db, args.postgres_url, "dni-bench-", args.keep_logs)
        tmp, rdb, token, env = setting.tmp, setting.rdb, setting.token, setting.env
        env.update({
            # No recorder thread in the web workers: it runs as its own process
            # (`flask dni worker`) in production and would compete for the 2 cores here.
            "DNI_WORKER": "true" if args.recorder else "false",
            "DNI_SESSION_RATE": "0",  # every request comes from 127.0.0.1
            "WEB_CONCURRENCY": str(args.workers), "DNI_THREADS": str(args.threads),
        })
        migrate(env)

        extra = () if args.max_requests is None else ("--max-requests", str(args.max_requests))
        service = Gunicorn("service", "wsgi:app", env, tmp, extra)
        stack.callback(service.stop)
        bare = Gunicorn("bare", "bench.bare_app:app", env, tmp, extra)
        stack.callback(bare.stop)
        service.wait_ready()
        bare.wait_ready()

        pool = BenchPool(service.port, token, rdb)
        pool.grow_to(args.pool_size)
        log(f"pool {pool.id}: {pool.size:,} numbers")

        lua = tmp / "lua"
        lua.mkdir()
        small = json.dumps({"site": pool.site_key})  # what the snippet sends to renew
        visit = json.dumps({"site": pool.site_key, "url": LANDING_URL, "referrer": REFERRER})
        bare_lua = write_lua(lua / "bare.lua", [("/bare", small, USER_AGENTS[0])])
        floor_lua = write_lua(lua / "floor.lua", [("/floor", small, USER_AGENTS[0])])
        new_lua = write_lua(lua / "new_session.lua", [
            ("/v1/sessions", visit, ua) for ua in USER_AGENTS])

        def renewals(name: str, path: str) -> Callable[[], Path]:
            def run() -> Path:
                # Fresh sessions for every run: waiting for a quiet machine can take longer
                # than the 300 s lease, and a lapsed lease is answered with a fallback.
                sessions = start_sessions(service.port, pool.site_key, args.sessions)
                return write_lua(lua / f"{name}.lua", [
                    (path.format(sid), small, USER_AGENTS[i % len(USER_AGENTS)])
                    for i, sid in enumerate(sessions)])
            return run

        def leases(script: Path) -> Callable[[], Path]:
            def run() -> Path:
                # Each new session keeps its number for the lease (300 s): make sure enough
                # are idle for a run as fast as the fastest bare run, plus 50%.
                fastest = max(r.rps for r in results.runs if r.kind == "bare")
                pool.ensure_idle(int(fastest * (args.seconds + args.warmup) * 1.5))
                return script
            return run

        floor_lease_lua = write_lua(lua / "floor_lease.lua", [
            (f"/floor/lease/{pool.id}", visit, ua) for ua in USER_AGENTS])
        prepare = {"bare": lambda: bare_lua, "floor": lambda: floor_lua,
                   "floor_renew": renewals("floor_renew", f"/floor/renew/{pool.id}/{{}}"),
                   "floor_lease": leases(floor_lease_lua),
                   "heartbeat": renewals("heartbeat", "/v1/sessions/{}/heartbeat"),
                   "new_session": leases(new_lua)}
        servers = {kind: bare for kind in ("bare", "floor", "floor_renew", "floor_lease")}
        servers.update(heartbeat=service, new_session=service)

        cpu = CpuMeter([service.proc.pid, bare.proc.pid])
        floors = ["floor"] + (["floor_renew", "floor_lease"] if args.script_floors else [])
        order = ["bare"] + (floors if args.floor else []) + ["heartbeat", "new_session"]
        plan = order * args.rounds + ["bare"]
        log(f"measuring {len(plan)} runs of {args.seconds:g}s (+{args.warmup:g}s warm-up), "
            f"{args.connections} connections: {', '.join(plan)}")
        for kind in plan:
            for attempt in range(1 + args.retries):
                run = measure(kind, servers[kind], prepare[kind], args, pool, cpu)
                if run.other_cpu <= args.quiet_limit or attempt == args.retries:
                    break
                # Other processes took CPU from the server during the run: it would be
                # charged to this endpoint alone, so measure it again.
                results.discarded.append(run)
                log(f"  (others used {run.other_cpu:.2f} cores during that run: once more)")
            results.runs.append(run)
        results.settings["pool_size_final"] = pool.size
        results.summary = summarise(results.runs)
        results.valid = all(s.non_2xx == 0 and s.fallbacks == 0 and s.socket_errors == 0
                            for s in results.summary) and not any(
            "MISMATCH" in r.server_check for r in results.runs)
    return results


def print_table(res: Results) -> None:
    m, s = res.machine, res.settings
    print(f"\nDNI snippet API throughput ({m['date']}; {m['cores']} cores, {m['cpu']}; "
          f"Python {m['python']}; load before {m['load_before']:.2f})")
    recycle = ("gunicorn.conf.py's max_requests" if s["max_requests"] is None
               else f"max_requests {s['max_requests']}")
    print(f"gunicorn: {s['workers']} workers x {s['threads']} thread(s), {recycle}, access log off; "
          f"database {s['db']}; wrk {s['wrk_threads']} thread(s), {s['connections']} "
          f"connections, {s['seconds']:g}s per run (+{s['warmup']:g}s warm-up), "
          f"{s['rounds']} round(s)\n")
    head = (f"{'endpoint':<13}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'x bare':>8}{'target':>7}"
            f"  {'result':<6}{'x floor':>8}{'target':>7}  {'result':<6}"
            f"{'CPU us':>7}{'x bare':>7}{'runs':>5}{'non-2xx':>8}{'fallbk':>7}"
            f"{'sockerr':>8}{'other CPU':>10}")
    print(head)
    print("-" * len(head))
    for x in res.summary:
        target = f">={x.target:.1f}" if x.target is not None else ""
        floor = f"{x.floor_ratio:.2f}" if x.floor_ratio is not None else "-"
        floor_target = f">={x.floor_target:.1f}" if x.floor_target is not None else ""
        print(f"{x.kind:<13}{x.rps:>8.0f}{x.p50_ms:>8.2f}{x.p99_ms:>8.2f}{x.ratio:>8.2f}"
              f"{target:>7}  {x.verdict:<6}{floor:>8}{floor_target:>7}  {x.floor_verdict:<6}"
              f"{x.cpu_us:>7.0f}{x.cpu_ratio:>7.2f}{x.runs:>5}"
              f"{x.non_2xx:>8}{x.fallbacks:>7}{x.socket_errors:>8}{x.other_cpu:>10.2f}")
    print("\nreq/s, p50, p99 and CPU us (gunicorn's CPU time per request, master and workers) are "
          "medians over\nthe runs of each endpoint. The first x bare divides req/s by the bare "
          "median (the target\napplies to it); x floor divides it by the floor's (bare + one EVALSHA, "
          "--floor),\nthe yardstick of issue 14; the last divides bare CPU us by this one's, "
          "which other load disturbs less.")
    print("floor_renew, floor_lease: the bare endpoint plus the service's own renewal or lease "
          "(its pool client,\nthe real scripts and arguments) and nothing else; their x floor is "
          "the most a heartbeat or a\nnew session could reach with today's scripts.")
    print("other CPU: the most cores used by processes outside the benchmark during a run "
          "of that endpoint;")
    print("above ~0.2 the machine was shared and the figures understate the service.")
    if res.discarded:
        print(f"{len(res.discarded)} run(s) measured again because other processes were busy.")
    restarts = sum(r.worker_restarts for r in res.runs)
    if restarts:
        print(f"gunicorn restarted workers {restarts} time(s) during the runs "
              "(max_requests in gunicorn.conf.py).")
    if not res.valid:
        print("INVALID: some answers were errors, non-2xx or fallbacks, or the pool counters "
              "did not match the answers; see the log above.")

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 DEFAULT_POSTGRES_URL),
                        help="server to create the scratch database on (and drop it)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each run, discarded")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2,
                        help="bare/heartbeat/new rounds (then one more bare run)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads; 1 leaves the most CPU to the server on 2 cores")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both apps")
    parser.add_argument("--threads", type=int, default=1,
                        help="gunicorn threads per worker, both apps (1 = sync worker)")
    parser.add_argument("--max-requests", type=int, default=None,
                        help="override gunicorn.conf.py's max_requests for both apps (0: never "
                             "restart workers), to take worker restarts out of the figures")
    parser.add_argument("--sessions", type=int, default=1000,
                        help="sessions the heartbeat runs cycle through")
    parser.add_argument("--pool-size", type=int, default=20_000,
                        help="initial numbers; grown before each new-session run as needed")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the bare endpoint plus one lease-like EVALSHA, and "
                             "print each endpoint's ratio to it (issue 14)")
    parser.add_argument("--script-floors", action=argparse.BooleanOptionalAction, default=True,
                        help="with --floor, also measure the bare endpoint plus the service's "
                             "own renew.lua (floor_renew) and lease.lua (floor_lease): the most "
                             "a heartbeat and a new session could reach with today's scripts")
    parser.add_argument("--recorder", action="store_true",
                        help="run the recorder thread in each web worker (DNI_WORKER=true)")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="before each run, wait up to this long for other processes to "
                             "calm down (0: don't)")
    parser.add_argument("--quiet-limit", type=float, default=0.2,
                        help="cores other processes may use for the machine to count as quiet")
    parser.add_argument("--retries", type=int, default=2,
                        help="repeat a run during which others used more than --quiet-limit "
                             "cores, up to this many times")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)  # also when started in the background (ignored)
    try:
        res = benchmark(args)
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    if args.json:
        print(json.dumps({"settings": res.settings, "machine": res.machine, "valid": res.valid,
                          "summary": [asdict(s) for s in res.summary],
                          "runs": [asdict(r) for r in res.runs],
                          "discarded": [asdict(r) for r in res.discarded]}, indent=2))
    else:
        print_table(res)
    return 0 if res.valid else 1


if __name__ == "__main__":
    sys.exit(main())
