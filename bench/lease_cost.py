#!/usr/bin/env python3
"""Lease cost at pool sizes 100 and 100,000, measured in one run (issue 2).

Target: a lease from a pool of 100,000 numbers costs at most 1.2x a lease from a pool of
100. The pools are loaded straight into Redis with ``pools.leases.PoolService`` (no Flask,
no SQL), then each round takes, for each size in turn, batches of sessions through
lease -> renew -> release, timing every call.

Two costs are reported per operation, because they answer different questions:

* client: the call as the app sees it (``time.perf_counter_ns`` around the PoolService
  call): Python, redis-py, the round trip and the script. Round-trip noise can hide a
  script that grows with the pool.
* server: the script alone, from Redis' own ``INFO commandstats`` (usec per EVALSHA), read
  before and after each phase. Redis is shared, so a phase during which someone else also
  ran EVALSHA is counted apart (``foreign``) and left out.

    .venv/bin/python bench/lease_cost.py
    .venv/bin/python bench/lease_cost.py --rounds 3 --json

It uses Redis database 12 (or REDIS_URL if that names a database), flushed before and
after; it refuses a database holding keys it did not write.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere
from bench.harness import bench_redis_url, claim_redis, log  # noqa: E402
from pools.leases import LeaseRequest, PoolService  # noqa: E402

PREFIX = "bench"
TARGET = 1.2
SITE = "s"
OPS = ("lease", "renew", "release")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def numbers(count: int) -> list[str]:
    """Fictional US numbers (+1 650 2XX NNNN); Redis does not validate them anyway."""
    return [f"+1650{200 + i // 10_000:03d}{i % 10_000:04d}" for i in range(count)]


def load_spec(count: int) -> dict:
    return {"mode": "load",
            "meta": {"site": SITE, "target": "+18005550100", "fallback": "+18005550100",
                     "lease_ms": 300_000, "max_age_ms": 14_400_000, "cooldown_ms": 0,
                     "policy": "fallback"},
            "active": numbers(count), "idle_since": {}, "leases": []}


class ScriptStats:
    """EVALSHA calls and microseconds so far, from Redis' INFO commandstats."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def read(self) -> tuple[int, int]:
        stats = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)), int(stats.get("usec", 0))


@dataclass
class OpCost:
    """Every timing of one operation at one pool size."""

    client_ns: list[int] = field(default_factory=list)
    server_calls: int = 0
    server_usec: int = 0
    foreign_phases: int = 0  # phases left out of server_* because others ran EVALSHA too

    def client_us(self, q: float = 0.5) -> float:
        ordered = sorted(self.client_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    def server_us(self) -> float | None:
        return self.server_usec / self.server_calls if self.server_calls else None


class PoolBench:
    """One pool of ``size`` numbers, and the costs measured against it."""

    def __init__(self, svc: PoolService, stats: ScriptStats, pool_id: int, size: int,
                 batch: int):
        self.svc, self.stats, self.pool_id, self.size = svc, stats, pool_id, size
        self.batch = min(batch, size // 2)  # never exhaust the small pool
        self.costs = {op: OpCost() for op in OPS}
        self.rounds_us: dict[str, list[float]] = {op: [] for op in OPS}
        started = time.perf_counter()
        svc.sync(pool_id, load_spec(size))
        self.load_seconds = time.perf_counter() - started
        self.serial = 0

    def prefill(self, fraction: float) -> int:
        """Lease a share of the pool to sessions that keep it: a busy pool, not an idle one."""
        held = int(self.size * fraction)
        for i in range(held):
            self.svc.lease(LeaseRequest(self.pool_id, f"held-{i}", now_ms()))
        return held

    def _phase(self, op: str, sessions: list[str]) -> None:
        """Run one operation for each session, timing each call and the phase in Redis."""
        cost = self.costs[op]
        svc, pid = self.svc, self.pool_id
        calls0, usec0 = self.stats.read()
        for session in sessions:
            now = now_ms()
            t0 = time.perf_counter_ns()
            if op == "lease":
                out = svc.lease(LeaseRequest(pid, session, now))
            elif op == "renew":
                out = svc.renew_many([pid], session, SITE, now)[0]
            else:
                out = svc.release(pid, session, now)
            cost.client_ns.append(time.perf_counter_ns() - t0)
            # A renewal that fails comes back as an error object, a release as False.
            if out is False or (op != "release" and getattr(out, "number", None) is None):
                raise RuntimeError(f"{op} for {session} in pool {pid} failed: {out!r}")
        calls1, usec1 = self.stats.read()
        if calls1 - calls0 == len(sessions):
            cost.server_calls += len(sessions)
            cost.server_usec += usec1 - usec0
        else:
            cost.foreign_phases += 1

    def round(self, ops: int) -> None:
        """``ops`` sessions, in batches: lease them all, renew them all, release them all."""
        marks = {op: len(self.costs[op].client_ns) for op in OPS}
        for _ in range(0, ops, self.batch):
            sessions = [f"r{self.serial + i}" for i in range(self.batch)]
            self.serial += self.batch
            for op in OPS:
                self._phase(op, sessions)
        for op in OPS:
            samples = self.costs[op].client_ns[marks[op]:]
            self.rounds_us[op].append(statistics.median(samples) / 1000)
        # The event stream only grows here (no recorder); keep both pools' streams small.
        self.svc.redis.xtrim(self.svc.keys(self.pool_id).events, maxlen=0, approximate=False)


@dataclass
class SizeResult:
    size: int
    load_seconds: float
    held: int
    samples: int
    client_p50_us: dict
    client_p90_us: dict
    client_p99_us: dict
    round_medians_us: dict
    server_us: dict
    foreign_phases: dict


def result_of(bench: PoolBench, held: int) -> SizeResult:
    c = bench.costs
    return SizeResult(
        size=bench.size, load_seconds=round(bench.load_seconds, 3), held=held,
        samples=len(c["lease"].client_ns),
        client_p50_us={op: round(c[op].client_us(0.5), 1) for op in OPS},
        client_p90_us={op: round(c[op].client_us(0.9), 1) for op in OPS},
        client_p99_us={op: round(c[op].client_us(0.99), 1) for op in OPS},
        round_medians_us={op: [round(x, 1) for x in bench.rounds_us[op]] for op in OPS},
        server_us={op: (round(c[op].server_us(), 2) if c[op].server_us() else None)
                   for op in OPS},
        foreign_phases={op: c[op].foreign_phases for op in OPS})


def ratio(big, small) -> float | None:
    return big / small if big and small else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 100_000],
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=2000,
                        help="sessions per size per round (leased, renewed, released)")
    parser.add_argument("--batch", type=int, default=50,
                        help="sessions leased before they are renewed and released")
    parser.add_argument("--prefill", type=float, default=0.0,
                        help="share of each pool leased (and kept) before measuring, e.g. 0.5")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    url = bench_redis_url()
    client = claim_redis(url)
    try:
        svc = PoolService(client, prefix=PREFIX)
        stats = ScriptStats(client)
        small, large = args.sizes
        log(f"redis {url}: loading pools of {small:,} and {large:,} numbers")
        benches = [PoolBench(svc, stats, 1, small, args.batch),
                   PoolBench(svc, stats, 2, large, args.batch)]
        held = [b.prefill(args.prefill) for b in benches]
        for b in benches:  # warm up: scripts cached, connections made, branches taken
            b.round(min(args.ops, 200))
            b.costs = {op: OpCost() for op in OPS}
            b.rounds_us = {op: [] for op in OPS}
        gc.disable()  # a collection inside one size's loop would be charged to that size
        try:
            for r in range(args.rounds):
                # Alternate which size goes first, so drift over time hits both alike.
                for b in benches if r % 2 == 0 else benches[::-1]:
                    b.round(args.ops)
                log(f"  round {r + 1}/{args.rounds}: lease median "
                    + ", ".join(f"{b.size:,}: {b.rounds_us['lease'][-1]:.1f} us" for b in benches))
        finally:
            gc.enable()
        results = [result_of(b, h) for b, h in zip(benches, held, strict=True)]
    finally:
        client.flushdb()
        client.close()

    lo, hi = results
    ratios = {
        "client_p50": {op: ratio(hi.client_p50_us[op], lo.client_p50_us[op]) for op in OPS},
        "server": {op: ratio(hi.server_us[op], lo.server_us[op]) for op in OPS},
    }
    if args.json:
        print(json.dumps({"redis": url, "settings": vars(args), "target": TARGET,
                          "load": os.getloadavg()[0],
                          "sizes": [asdict(x) for x in results], "ratios": ratios}, indent=2))
        return 0

    print(f"\nLease cost by pool size ({time.strftime('%Y-%m-%d %H:%M %Z')}; "
          f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; {args.rounds} rounds x "
          f"{args.ops:,} sessions per size, batches of {args.batch}"
          + (f"; pools {args.prefill:.0%} leased" if args.prefill else "") + ")\n")
    head = (f"{'operation':<10}{'pool size':>10}{'client p50':>12}{'p90':>9}{'p99':>9}"
            f"{'server':>10}{'foreign':>9}")
    print(head + "    (microseconds per call)")
    print("-" * len(head))
    for op in OPS:
        for x in results:
            server = x.server_us[op]
            print(f"{op:<10}{x.size:>10,}{x.client_p50_us[op]:>12.1f}{x.client_p90_us[op]:>9.1f}"
                  f"{x.client_p99_us[op]:>9.1f}"
                  f"{(f'{server:.2f}' if server else 'n/a'):>10}{x.foreign_phases[op]:>9}")
    print(f"\nratio {hi.size:,} / {lo.size:,}      client p50   server   target")
    for op in OPS:
        c, s = ratios["client_p50"][op], ratios["server"][op]
        verdict = ""
        if op == "lease":
            verdict = "  " + ", ".join(
                f"{name} {'PASS' if v is not None and v <= TARGET else 'BELOW'}"
                for name, v in (("client", c), ("server", s)))
        print(f"{op:<20}{(f'{c:.2f}' if c else 'n/a'):>12}{(f'{s:.2f}' if s else 'n/a'):>9}"
              f"   {'<=' + str(TARGET) if op == 'lease' else ''}{verdict}")
    print(f"\nloaded in {lo.load_seconds:.2f}s ({lo.size:,}) and {hi.load_seconds:.2f}s "
          f"({hi.size:,}); per-round lease medians (client, us): "
          + "; ".join(f"{x.size:,}: {x.round_medians_us['lease']}" for x in results))
    print("server: INFO commandstats usec per EVALSHA over the phases no other client "
          "shared (foreign: phases left out).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
