"""The attribution accuracy simulator: how often is a call credited to the visit that made it?

A traffic model (``model.TrafficModel``) plans visits, the snippet's heartbeats and calls,
each call knowing the visit that really made it. The runner plays that one plan against
pools of several sizes through the real pool scripts, recorder and matcher, on a virtual
clock, against the Redis client and SQL session it is given, and counts per size the calls
credited to the right visit, to a wrong one, to none, and those lost to exhaustion (the
visitor was shown the fallback number). ``report`` prints the table and draws the chart.

    report = simulate(redis, db, days=7, seed=1)
    print(format_table(report))

Used by ``bench/accuracy.py`` and ``flask --app wsgi dni simulate``.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from attribution.simulation.model import PoolSettings, Schedule, TrafficModel, plan
from attribution.simulation.report import (
    format_phases,
    format_table,
    format_weighed,
    write_chart,
)
from attribution.simulation.runner import OUTCOMES, CallResult, SizeResult, pool_numbers, run_size
from pools.models import Base, PoolNumber

# Pool sizes tried by default, as multiples of the offered load (mean leases held at once in
# the busiest hour of the day).
DEFAULT_MULTIPLES = (0.6, 0.8, 1.0, 1.15, 1.3, 1.5, 1.8)
START_MS = 1_767_571_200_000  # Monday 5 January 2026, 00:00 UTC: hour 0 of the model's day


@dataclass
class SimulationReport:
    """A run: the traffic it played and the outcome of each pool size, smallest first."""

    model: TrafficModel
    settings: PoolSettings
    days: float
    seed: int
    offered_load: float  # mean leases held at once in the busiest hour of the day
    mean_load: float  # mean leases held at once over the whole run
    visits: int
    calls: int
    sizes: list[SizeResult]


def sizes_for(offered_load: float, multiples: Sequence[float] = DEFAULT_MULTIPLES) -> list[int]:
    """Pool sizes at these multiples of the offered load (at least 1 number, no repeats)."""
    return sorted({max(1, round(offered_load * m)) for m in multiples})


def simulate(redis, db: Session, *, model: TrafficModel | None = None,
             settings: PoolSettings | None = None, days: float = 7.0, seed: int = 1,
             sizes: Sequence[int] | None = None,
             multiples: Sequence[float] = DEFAULT_MULTIPLES,
             progress: Callable[[SizeResult], None] | None = None) -> SimulationReport:
    """Play ``days`` of the model's traffic against a new pool of each size.

    Each pool lives on a simulated site of its own in ``db`` (committed as the worker
    would) and under a Redis key prefix of its own, deleted afterwards. ``sizes`` default
    to ``multiples`` of the offered load. The same model, days and seed give the same counts.
    """
    model = model or TrafficModel()
    settings = settings or PoolSettings()
    schedule = plan(model, settings, days=days, seed=seed, start_ms=START_MS)
    load = schedule.offered_load()
    chosen = sorted(set(sizes)) if sizes else sizes_for(load, multiples)
    prefix = f"dnisim-{secrets.token_hex(4)}"
    results = []
    try:
        for size in chosen:
            result = run_size(redis, db, schedule, settings, size, prefix=prefix,
                              number_block=free_block(db))
            results.append(result)
            if progress:
                progress(result)
    finally:
        forget(redis, prefix)
    return SimulationReport(model, settings, days, seed, load, schedule.mean_load(),
                            len(schedule.visits),
                            schedule.calls, results)


@contextmanager
def scratch_database() -> Iterator[Session]:
    """A session on a throwaway SQLite database (the schema of the models), deleted after."""
    import attribution.models  # noqa: F401  (their tables are created too)

    with tempfile.TemporaryDirectory(prefix="dni-simulate-") as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'simulation.sqlite3'}")
        try:
            Base.metadata.create_all(engine)
            with Session(engine) as db:
                yield db
        finally:
            engine.dispose()


def simulate_in_scratch_database(redis, **options) -> SimulationReport:
    """``simulate`` on a ``scratch_database``: for a service's own command line, so a
    simulation never writes into its data."""
    with scratch_database() as db:
        return simulate(redis, db, **options)


def free_block(db: Session) -> int:
    """The first block of simulated numbers no pool has used."""
    block = 0
    while db.scalar(select(PoolNumber.id).where(
            PoolNumber.number == pool_numbers(block, 1)[0]).limit(1)) is not None:
        block += 1
    return block


def forget(redis, prefix: str) -> None:
    """Delete every Redis key of the simulated pools."""
    batch = []
    for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            redis.delete(*batch)
            batch = []
    if batch:
        redis.delete(*batch)


__all__ = ["DEFAULT_MULTIPLES", "OUTCOMES", "CallResult", "PoolSettings", "Schedule",
           "SimulationReport", "SizeResult", "TrafficModel", "format_phases", "format_table",
           "format_weighed", "plan", "scratch_database", "simulate",
           "simulate_in_scratch_database", "sizes_for", "write_chart"]
