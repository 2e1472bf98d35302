"""How long the attribution report takes as the call history grows.

Fills a fresh database (a SQLite file, and a PostgreSQL database it creates and drops)
with 10,000, 100,000 and 1,000,000 calls spread over a year (4 sites in 4 time zones,
10 pools, 3 publishers, 14 source/medium pairs, 40 campaigns, repeat callers, about half
qualified, revenue and payout) and as many visits, migrated with Alembic as the app is.
It then runs the report exactly as GET /v1/reports/attribution does (``report_query`` +
``reports.run``, every metric) grouped by source x medium and by day, over the whole year
and over one month, and prints median and max per size and engine and the growth from the
smallest to the largest size. Each size and engine is also asked once through the Flask
test client, to show the HTTP path returns the same report.
Target (issue 5): 1,000,000 calls under 1 s on both engines.

``--routed`` adds pay-per-call: every call gets a routing log (``call_routing``: one to
three offers among 10 buyers of 3 plans, about 60% taken, revenue on conversions) and the
report is also grouped by buyer and by target with the routing metrics, and by source x
medium asking buyer_revenue (issue 15: well under 1 s at 200,000 routed calls a year).

    python bench/report_query.py [--db sqlite|postgres|both] [--sizes 10000,100000]
                                 [--repeats 5] [--visits-per-call 1] [--explain] [--routed]

PostgreSQL: DATABASE_URL or postgresql://postgres@127.0.0.1:5432/test names the server;
the benchmark creates ``dni_bench_<random>`` there and drops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from attribution import reports  # noqa: E402
from attribution.models import Call, Visit  # noqa: E402
from attribution.zones import local_day  # noqa: E402
from bench.harness import app_on_new_database  # noqa: E402
from dni_server.api.auth import authenticate  # noqa: E402
from dni_server.api.reports import report_query  # noqa: E402
from dni_server.extensions import db  # noqa: E402
from pools.models import Pool, Site  # noqa: E402
from routing.models import Buyer, CallRouting, CallRoutingOffer, RoutingPlan  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FIRST_DAY = dt.date(2025, 6, 1)
DAYS = 365
YEAR = {"start": "2025-06-01", "end": "2026-05-31"}
MONTH = {"start": "2026-03-01", "end": "2026-03-31"}
GROUPINGS = {"source,medium": "source x medium", "day": "day"}
ROUTING_METRICS = ("calls,connected_calls,converted_calls,buyer_revenue,payout,margin,"
                   "offers,answer_rate,avg_ring_seconds")
# With --routed: (label, group_by, metrics).
ROUTED_GROUPINGS = [("buyer", "buyer", ROUTING_METRICS), ("target", "target", ROUTING_METRICS),
                    ("src x med +rev", "source,medium", "calls,payout,buyer_revenue,margin")]
OUTCOMES = [("answered", 50), ("no_answer", 25), ("busy", 10), ("declined", 10), ("failed", 5)]
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "UTC"]
PUBLISHERS = ["Acme", "Beta", "Gamma", None]
# (source, medium, weight): paid search dominates, as it does for most call-driven sites.
CHANNELS = [("google", "cpc", 30), ("google", "organic", 14), ("bing", "cpc", 8),
            ("bing", "organic", 2), ("facebook", "paid_social", 7), ("facebook", "social", 3),
            ("(direct)", "(none)", 12), ("newsletter", "email", 5), ("yelp", "referral", 4),
            ("yahoo", "organic", 2), ("radio", "offline", 5), ("billboard", "offline", 2),
            ("tiktok", "paid_social", 3), ("partner.example", "referral", 3)]
DEVICES = [("mobile", "Chrome", "Android"), ("mobile", "Safari", "iOS"),
           ("desktop", "Chrome", "Windows"), ("desktop", "Edge", "Windows"),
           ("desktop", "Safari", "macOS"), ("tablet", "Safari", "iOS")]
REGIONS = [("US", "NY"), ("US", "CA"), ("US", "TX"), ("US", "FL"), ("GB", "ENG"), ("US", "IL")]


def pg_base() -> str:
    url = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


# -- the data set ---------------------------------------------------------------------------


def make_sites(session) -> list[dict]:
    """Four sites (one per zone) and ten pools, each with a publisher or none."""
    pools = []
    for n, zone_name in enumerate(ZONES):
        site = Site(key=f"site_bench_{n}_{uuid.uuid4().hex[:6]}", name=f"Site {n}", domains=[],
                    keyword_params=[], timezone=zone_name)
        session.add(site)
        session.flush()
        for p in range(3 if n < 2 else 2):
            publisher = PUBLISHERS[(n + p) % len(PUBLISHERS)]
            pool = Pool(site_id=site.id, name=f"pool {n}.{p}", target="+18005550100",
                        destination="+12125550199", fallback="+18005550100",
                        publisher=publisher)
            session.add(pool)
            session.flush()
            pools.append({"site_id": site.id, "zone": zone_name, "pool_id": pool.id,
                          "publisher": publisher, "number": f"+1650555{len(pools):04d}"})
    session.commit()
    return pools


def generate(size: int, pools: list[dict], visits_per_call: int, seed: int = 5):
    """``size`` calls and ``size * visits_per_call`` visits as column dicts, oldest first."""
    rng = random.Random(seed)
    channels = [c[:2] for c in CHANNELS]
    weights = [c[2] for c in CHANNELS]
    first = dt.datetime.combine(FIRST_DAY, dt.time(), dt.UTC) + dt.timedelta(hours=8)
    span = DAYS * 86400 - 10 * 3600  # every call on a local day inside the year
    offsets = sorted(rng.randrange(span) for _ in range(size))
    callers = max(10, int(size * 0.6))  # about 40% of calls come from someone who called before
    seen: set[int] = set()
    calls, visits = [], []
    for i, offset in enumerate(offsets):
        started = first + dt.timedelta(seconds=offset)
        pool = pools[rng.randrange(len(pools))]
        source, medium = rng.choices(channels, weights)[0]
        device, browser, os_name = DEVICES[rng.randrange(len(DEVICES))]
        country, region = REGIONS[rng.randrange(len(REGIONS))]
        caller = int(rng.paretovariate(1.2) * 7) % callers if rng.random() < 0.5 \
            else rng.randrange(callers)
        repeat = caller in seen
        seen.add(caller)
        answered = rng.random() < 0.85
        duration = int(rng.expovariate(1 / 150)) + 5 if answered else None
        qualified = bool(answered and duration >= 60 and rng.random() < 0.75)
        revenue = Decimal(rng.choice((25, 40, 60, 150))) if qualified else Decimal(0)
        day = local_day(started, pool["zone"])
        campaign = f"campaign-{rng.randrange(40):02d}" if medium in ("cpc", "paid_social",
                                                                      "email") else None
        attribution = {
            "source": source, "medium": medium, "utm_source": source, "utm_medium": medium,
            "utm_campaign": campaign, "utm_term": f"term {rng.randrange(200)}",
            "keyword": f"keyword {rng.randrange(200)}", "utm_content": f"ad-{rng.randrange(12)}",
            "landing_url": f"https://shop.example/p/{rng.randrange(30)}",
            "landing_path": f"/p/{rng.randrange(30)}", "referrer_domain": f"{source}.example",
            "device_type": device, "browser": browser, "os": os_name, "country": country,
            "region": region}
        session_id = f"s{i}"
        calls.append(attribution | {
            "provider": "bench", "provider_call_id": f"call-{i}",
            "from_number": f"+1415{caller:07d}", "from_valid": True, "to_number": pool["number"],
            "started_at": started, "local_day": day,
            "answered_at": started + dt.timedelta(seconds=4) if answered else None,
            "ended_at": started + dt.timedelta(seconds=(duration or 20) + 4),
            "status": "completed" if answered else "no-answer", "status_rank": 5,
            "duration": duration, "talk_time": answered, "site_id": pool["site_id"],
            "pool_id": pool["pool_id"], "session_id": session_id, "method": "session",
            "confidence": 0.9, "explanation": "{}", "campaign": campaign,
            "publisher": pool["publisher"], "caller_country": "US",
            "caller_region": REGIONS[caller % len(REGIONS)][1], "repeat_caller": repeat,
            "first_touch": "{}", "qualified": qualified, "qualification_failures": "[]",
            "revenue": revenue, "payout": (revenue * Decimal("0.4")).quantize(Decimal("0.01")),
            "created_at": started, "updated_at": started})
        for v in range(visits_per_call):
            created = started - dt.timedelta(minutes=3 + 40 * v)
            visits.append(attribution | {
                "session_id": session_id if v == 0 else f"s{i}-{v}", "site_id": pool["site_id"],
                "visitor_id": f"v{caller}", "created_at": created,
                "local_day": local_day(created, pool["zone"]), "ip": "203.0.113.7"})
    return calls, visits


def make_buyers(session) -> tuple[list[int], list[int]]:
    """Ten buyers (two targets each) and three plans."""
    buyers, plans = [], []
    for n in range(10):
        row = Buyer(name=f"Buyer {n}", spec={"targets": [{"number": f"+1212555{n:02d}01"},
                                                         {"number": f"+1212555{n:02d}02"}]})
        session.add(row)
        session.flush()
        buyers.append(row.id)
    for n in range(3):
        row = RoutingPlan(name=f"Plan {n}", spec={"tiers": []})
        session.add(row)
        session.flush()
        plans.append(row.id)
    session.commit()
    return buyers, plans


def generate_routing(calls: list[dict], buyers: list[int], plans: list[int], seed: int = 7
                     ) -> tuple[list[dict], list[dict]]:
    """A routing log for every call: one to three offers, the first answered one taking it;
    and the offers as rows (what ``routing.models`` writes with each log)."""
    rng = random.Random(seed)
    outcomes = [o[0] for o in OUTCOMES]
    weights = [o[1] for o in OUTCOMES]
    rows, offer_rows = [], []
    for call in calls:
        offers, winner, target = [], None, None
        for buyer in rng.sample(buyers, rng.randint(1, 3)):
            outcome = rng.choices(outcomes, weights)[0] if winner is None else "no_answer"
            number = f"+1212555{buyers.index(buyer):02d}0{rng.randint(1, 2)}"
            offers.append({"buyer": buyer, "target": number, "outcome": outcome,
                           "ring_seconds": round(rng.uniform(1, 30), 1),
                           "at": call["started_at"].isoformat()})
            if outcome == "answered" and winner is None:
                winner, target = buyer, number
        converted = winner is not None and rng.random() < 0.6
        offer_rows += [{"routing_id": len(rows) + 1, "buyer_id": o["buyer"],
                        "target": o["target"], "outcome": o["outcome"],
                        "ring_seconds": o["ring_seconds"]} for o in offers]
        rows.append({"id": len(rows) + 1, "provider": call["provider"],
                     "provider_call_id": call["provider_call_id"],
                     "plan_id": rng.choice(plans), "ivr": {"zip": None, "tags": {},
                                                           "pressed": None},
                     "offers": offers, "skipped": [], "buyer_id": winner, "target": target,
                     "converted": converted,
                     "revenue": Decimal(rng.choice((30, 45, 60))) if converted else Decimal(0),
                     "outcome": "connected" if winner else "fallback",
                     "site_id": call["site_id"], "local_day": call["local_day"],
                     "created_at": call["started_at"], "updated_at": call["started_at"],
                     "publisher": call["publisher"]})
    return rows, offer_rows


# -- loading --------------------------------------------------------------------------------


def complete(table: sa.Table, rows: list[dict]) -> list[str]:
    """Fill required columns we did not generate (added by later migrations) from defaults."""
    columns = [c for c in table.columns if not c.primary_key or c.name in rows[0]]
    for column in columns:
        if column.name in rows[0]:
            continue
        default = column.default.arg if column.default is not None else None
        value = default(None) if callable(default) else default
        for row in rows:
            row[column.name] = value
    return [c.name for c in columns]


def load(engine: sa.Engine, table: sa.Table, rows: list[dict], batch: int = 50_000) -> None:
    """Bulk-load rows: COPY on PostgreSQL, executemany on SQLite (values bound as the ORM
    binds them, through each column type's own bind processor)."""
    if not rows:
        return
    names = complete(table, rows)
    processors = [table.c[name].type._cached_bind_processor(engine.dialect) for name in names]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([p(row[n]) if p else row[n] for n, p in zip(names, processors,
                                                                              strict=True)])
        else:
            sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
                   f"VALUES ({', '.join('?' * len(names))})")
            for start in range(0, len(rows), batch):
                cursor.executemany(sql, [
                    [p(row[n]) if p else row[n] for n, p in zip(names, processors, strict=True)]
                    for row in rows[start:start + batch]])
        raw.commit()
    finally:
        raw.close()


# -- databases ------------------------------------------------------------------------------


@contextlib.contextmanager
def database(engine_name: str):
    """A fresh, migrated database and an app on it; dropped (or deleted) afterwards."""
    for logger in ("alembic", "dni_server"):  # keep migration and request logs out
        logging.getLogger(logger).setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        app = app_on_new_database(stack, engine_name, pg_base(), DNI_ADMIN_TOKEN=ADMIN_TOKEN)
        with app.app_context():
            yield app


# -- measuring ------------------------------------------------------------------------------


def run_report(args: dict) -> dict:
    """The report as the API computes it: the same query builder and runner."""
    return reports.run(db.session, report_query(args))


def backend_cpu() -> float:
    """CPU seconds used so far by this session's PostgreSQL backend (a local server)."""
    pid = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_report(app, args: dict, repeats: int) -> tuple[list[float], list[float], dict]:
    """Wall seconds and CPU seconds (ours, plus the PostgreSQL backend's) per run."""
    postgres = db.engine.dialect.name == "postgresql"
    with app.test_request_context(headers=AUTH):
        authenticate()  # the API's own token check sets the principal (admin: no scope)
        result = run_report(args)  # warm-up (caches, plans); not counted
        db.session.rollback()
        timings, cpu = [], []
        for _ in range(repeats):
            server = backend_cpu() if postgres else 0.0  # same transaction, same backend
            ours = time.process_time()
            started = time.perf_counter()
            result = run_report(args)
            timings.append(time.perf_counter() - started)
            ours = time.process_time() - ours
            server = backend_cpu() - server if postgres else 0.0
            cpu.append(ours + server)
            db.session.rollback()  # a request ends its transaction; so does each run here
    return timings, cpu, result


def check_http(app, args: dict, expected: dict) -> float:
    """The same report through the Flask test client: equal rows and totals."""
    client = app.test_client()
    started = time.perf_counter()
    response = client.get("/v1/reports/attribution", query_string=args,
                          headers=AUTH)
    seconds = time.perf_counter() - started
    assert response.status_code == 200, response.text
    body = response.get_json()
    assert body["totals"] == _jsonish(expected["totals"]), "HTTP totals differ"
    assert [r["dimensions"] for r in body["rows"]] == \
        [r["dimensions"] for r in expected["rows"]], "HTTP rows differ"
    return seconds


def _jsonish(values: dict) -> dict:
    return {k: (float(v) if isinstance(v, float) else v) for k, v in values.items()}


def explain(app, args: dict) -> None:
    """Print the plan of each statement the report runs."""
    with app.test_request_context(headers=AUTH):
        authenticate()
        query = report_query(args)
        for name, stmt in reports.statements(query, db.engine.dialect.name).items():
            print(f"      -- {name}\n      " + "\n      ".join(reports.plan(db.session, stmt)))
        db.session.rollback()


def groupings(routed: bool) -> list[tuple[str, dict]]:
    """(label, report arguments) for each report measured."""
    out = [(label, {"group_by": group_by}) for group_by, label in GROUPINGS.items()]
    if routed:
        out += [(label, {"group_by": group_by, "metrics": metrics})
                for label, group_by, metrics in ROUTED_GROUPINGS]
    return out


def measure(engine_name: str, size: int, repeats: int, visits_per_call: int,
            show_plans: bool, routed: bool = False) -> list[dict]:
    with database(engine_name) as app:
        pools = make_sites(db.session)
        started = time.perf_counter()
        calls, visits = generate(size, pools, visits_per_call)
        load(db.engine, Call.__table__, calls)
        load(db.engine, Visit.__table__, visits)
        tables = ["calls", "visits"]
        if routed:
            buyers, plans = make_buyers(db.session)
            rows, offer_rows = generate_routing(calls, buyers, plans)
            load(db.engine, CallRouting.__table__, rows)
            load(db.engine, CallRoutingOffer.__table__, offer_rows)
            tables += ["call_routing", "call_routing_offers"]
            del rows, offer_rows
        del calls, visits
        if engine_name == "postgres":
            # What autovacuum leaves after a bulk insert: statistics, and the visibility map
            # that lets index-only scans skip the table. (Nobody runs ANALYZE on SQLite.)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in tables:
                    conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
        print(f"  {engine_name:8} {size:>9,} calls loaded in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        results = []
        for period_name, period in (("year", YEAR), ("month", MONTH)):
            for label, grouping in groupings(routed):
                args = period | grouping
                timings, cpu, result = time_report(app, args, repeats)
                http = check_http(app, args, result)
                row = {"db": engine_name, "calls": size, "range": period_name,
                       "group_by": label, "median": statistics.median(timings),
                       "max": max(timings), "cpu": statistics.median(cpu), "http": http,
                       "rows": len(result["rows"]),
                       "total_calls": result["totals"]["calls"]}
                results.append(row)
                print(f"  {engine_name:8} {size:>9,} {period_name:5} {label:16} "
                      f"median {row['median'] * 1000:7.1f} ms  max {row['max'] * 1000:7.1f} ms  "
                      f"CPU {row['cpu'] * 1000:7.1f} ms  (HTTP {http * 1000:7.1f} ms, "
                      f"{row['rows']} rows, "
                      f"{row['total_calls']:,} calls)", flush=True)
                if show_plans:
                    explain(app, args)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated call counts, e.g. 10000,100000 for a quick run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--visits-per-call", type=int, default=1)
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument("--routed", action="store_true",
                        help="route every call to buyers and report by buyer and target too")
    args = parser.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    engines = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"attribution report, every metric, {args.repeats} runs per query after a warm-up; "
          f"{args.visits_per_call} visit(s) per call")
    summary = []
    for engine_name in engines:
        for size in sizes:
            summary += measure(engine_name, size, args.repeats, args.visits_per_call,
                               args.explain, args.routed)
    print("\nsummary: median seconds per size; growth = largest / smallest; CPU = median CPU "
          "seconds at the largest size (ours plus the PostgreSQL backend's); result: the max "
          "at 1,000,000 against the 1 s target")
    print(f"{'db':9}{'range':7}{'group by':17}" + "".join(f"{s:>11,}" for s in sizes)
          + f"{'growth':>8}{'CPU':>7}  result")
    for engine_name in engines:
        for period_name in ("year", "month"):
            for label, _ in groupings(args.routed):
                rows = {r["calls"]: r for r in summary if r["db"] == engine_name
                        and r["range"] == period_name and r["group_by"] == label}
                medians = [rows[s]["median"] for s in sizes]
                largest = rows[sizes[-1]]
                verdict = ""
                if sizes[-1] >= 1_000_000:
                    verdict = "PASS" if largest["max"] < 1 else "ABOVE"
                print(f"{engine_name:9}{period_name:7}{label:17}"
                      + "".join(f"{m:11.3f}" for m in medians)
                      + f"{medians[-1] / medians[0]:7.1f}x{largest['cpu']:7.3f}  {verdict}")


if __name__ == "__main__":
    main()
