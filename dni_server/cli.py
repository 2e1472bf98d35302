"""``flask --app wsgi dni ...``: sites, pools, number imports, pool status, the worker."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterator

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from tqdm import tqdm

from attribution.zones import EARLIEST, LATEST, in_range
from dni_server.converters import parse_id
from dni_server.extensions import db, services
from dni_server.timefmt import now_ms
from pools import catalog
from pools.catalog import CatalogError
from pools.models import Pool, Site

IMPORT_CHUNK = 1000


@click.group()
def dni():
    """Manage sites, pools and numbers; run the worker."""


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def find_site(ref: str) -> Site:
    site_id = parse_id(ref)
    site = db.session.get(Site, site_id) if site_id is not None else db.session.scalar(
        select(Site).where(Site.key == ref))
    if site is None:
        fail(f"no site {ref!r} (give its id or key)")
    return site


@dni.command("create-site")
@click.argument("name")
@click.option("--domain", "domains", multiple=True, help="A domain the site's pages live on.")
@click.option("--keyword-param", "keyword_params", multiple=True,
              help="Extra URL parameter holding the keyword (e.g. kw).")
@click.option("--timezone", default="UTC", show_default=True)
@with_appcontext
def create_site(name, domains, keyword_params, timezone):
    """Create a site and print its public key."""
    site = catalog.create_site(db.session, name=name, domains=domains,
                               keyword_params=keyword_params, timezone=timezone)
    db.session.commit()
    click.echo(f"site {site.id} created, key {site.key}")


@dni.command("create-pool")
@click.option("--site", "site_ref", required=True, help="Site id or key.")
@click.option("--name", required=True)
@click.option("--target", required=True, help="The number printed on the page.")
@click.option("--destination", required=True, help="Where calls are forwarded.")
@click.option("--fallback", help="Shown when no tracking number can be given (default: target).")
@click.option("--lease-seconds", type=int, default=300, show_default=True)
@click.option("--cooldown-seconds", type=int, default=60, show_default=True)
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--rules", help='JSON list, e.g. \'[{"source": "google"}]\'.')
@click.option("--region", default="US", show_default=True, help="Country for numbers without +.")
@with_appcontext
def create_pool(site_ref, name, target, destination, fallback, lease_seconds, cooldown_seconds,
                priority, rules, region):
    """Create an empty pool; add numbers with import-numbers."""
    site = find_site(site_ref)
    settings = dict(name=name, target=target, destination=destination,
                    lease_seconds=lease_seconds, cooldown_seconds=cooldown_seconds,
                    priority=priority, rules=json.loads(rules) if rules else [])
    if fallback:
        settings["fallback"] = fallback
    try:
        pool, _ = catalog.create_pool(db.session, services().pools, site, region=region,
                                      now_ms=now_ms(), **settings)
    except CatalogError as exc:
        fail(f"{exc}: {json.dumps(exc.fields)}")
    db.session.commit()
    click.echo(f"pool {pool.id} created for site {site.key}")


def read_numbers(fh, problems: list) -> Iterator[tuple[int, str]]:
    """(line, value) of each row of an open CSV file, read as it goes: a ``number`` column
    if there is one, else the first. Where the file stops being readable CSV, reading ends
    and (line, reason) is added to ``problems``."""
    reader = csv.reader(fh)
    try:
        first = next(reader, None)
        if first is None:
            return
        header = [cell.strip().lower() for cell in first]
        column = 0
        if "number" in header:
            column = header.index("number")  # a header row naming the column
        elif first and any(ch.isdigit() for ch in first[0]):
            yield reader.line_num, first[0]  # no header row: the first row is a number
        # else a header row without a "number" column: skipped
        for row in reader:
            if any(cell.strip() for cell in row):
                yield reader.line_num, row[column] if len(row) > column else ""
    except (csv.Error, UnicodeDecodeError) as exc:
        problems.append((reader.line_num + 1, f"not readable CSV from here on ({exc})"))


def chunks(items, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@dni.command("import-numbers")
@click.argument("pool_id", type=int)
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--region", default="US", show_default=True, help="Country for numbers without +.")
@with_appcontext
def import_numbers(pool_id, csv_path, region):
    """Add the numbers in a CSV file to a pool, reporting each rejected row."""
    pool = db.session.get(Pool, pool_id)
    if pool is None:
        fail(f"no pool {pool_id}")
    accepted, rejected = 0, []
    with (open(csv_path, newline="", encoding="utf-8-sig") as fh,
          tqdm(unit="number", file=sys.stderr, desc="importing") as bar):
        problems: list[tuple[int, str]] = []
        for chunk in chunks(read_numbers(fh, problems), IMPORT_CHUNK):
            report = catalog.add_numbers(db.session, services().pools, pool,
                                         [value for _, value in chunk], region=region,
                                         now_ms=now_ms())
            db.session.commit()
            accepted += len(report.accepted)
            rejected += [(chunk[r.position][0], r.raw, r.reason) for r in report.rejected]
            bar.update(len(chunk))
        rejected += [(line, "", why) for line, why in problems]
    click.echo(f"{accepted} accepted, {len(rejected)} rejected")
    for line, raw, why in rejected:
        click.echo(f"  line {line}: {raw!r}: {why}")


CALL_COLUMNS = ("call_id", "from", "to", "started_at", "duration", "status", "recording_url")


@dni.command("import-calls")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def import_calls(csv_path):
    """Import past calls from a CSV file (call_id, from, to, started_at, duration?, status?,
    recording_url?): each is matched and qualified like a live call; a row already imported
    is counted once."""
    counts = {"attributed": 0, "unattributed": 0, "repeated": 0, "rejected": 0}
    report: list[str] = []
    with (open(csv_path, newline="", encoding="utf-8-sig") as fh,
          tqdm(unit="call", file=sys.stderr, desc="importing") as bar):
        reader = csv.DictReader(fh)  # rows read as they are imported, never all at once
        try:
            columns = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            fail(f"{csv_path} is not a UTF-8 CSV file: {exc}")
        missing = [c for c in ("call_id", "from", "to", "started_at") if c not in columns]
        if missing:
            fail(f"the CSV file needs the columns {', '.join(missing)}")
        try:
            for row in reader:
                kind, text = import_call(row)
                counts[kind] += 1
                report.append(f"  line {reader.line_num}: {text}")
                bar.update(1)
        except (csv.Error, UnicodeDecodeError) as exc:
            counts["rejected"] += 1
            report.append(f"  line {reader.line_num + 1}: rejected: not readable CSV from "
                          f"here on ({exc})")
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    for line in report:
        click.echo(line)


def import_call(row: dict) -> tuple[str, str]:
    """Import one CSV row as a call: its outcome (a key of the summary) and a report line."""
    from marshmallow import ValidationError
    from sqlalchemy.exc import DataError

    from attribution.calls import CallEventIn, ingest
    from dni_server.api.schemas import CallRequestSchema

    raw = {k: v for k, v in row.items() if k in CALL_COLUMNS and v not in (None, "")}
    duration = raw.get("duration", "").strip()
    if duration.isascii() and duration.isdigit() and len(duration) <= 9:
        raw["duration"] = int(duration)  # else left as text, for the schema to refuse
    try:
        data = CallRequestSchema().load(raw)
    except ValidationError as exc:
        return "rejected", "rejected: " + "; ".join(
            f"{field}: {' '.join(map(str, why))}" for field, why in exc.messages.items())
    if not in_range(data["started_at"]):
        return "rejected", f"rejected: started_at: not between {EARLIEST} and {LATEST}"
    event = CallEventIn(
        provider="api", provider_call_id=data["call_id"], event_key=f"{data['call_id']}:import",
        kind="import", occurred_at=data["started_at"], from_raw=data["from_"],
        to_raw=data["to"], status=data["status"], duration=data["duration"],
        recording_url=data["recording_url"], payload=raw)
    try:
        call, new = ingest(db.session, event, pools=services().pools)
        db.session.commit()
    except (ValueError, OverflowError, DataError) as exc:
        db.session.rollback()
        return "rejected", f"rejected: {type(exc).__name__}: {exc}"
    if not new:
        return "repeated", f"{data['call_id']}: already imported"
    kind = "unattributed" if call.method == "unattributed" else "attributed"
    return kind, (f"{data['call_id']}: {call.method}"
                  + (f" ({call.source}/{call.medium})" if call.source else "")
                  + (", qualified" if call.qualified else
                     f", not qualified ({', '.join(call.qualification_failures)})"))


@dni.command("apply-conversions-config")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def apply_conversions_config(path):
    """Check a conversions file (the DNI_CONVERSIONS_CONFIG format) and apply it now."""
    from attribution.conversions import admin
    from attribution.conversions.credentials import CredentialBox, MissingKey

    try:
        with open(path, encoding="utf-8") as handle:
            data = admin.parse_file(json.load(handle))
    except ValueError as exc:  # not JSON, or a bad destination or rule: the same check as boot
        fail(f"{path}: {exc}")
    try:
        skipped = admin.apply_file(db.session, data,
                                   CredentialBox(services().settings.credentials_keys))
    except MissingKey as exc:
        db.session.rollback()
        fail(str(exc))
    db.session.commit()
    for site_key in skipped:
        click.echo(f"  no site {site_key!r}: skipped")
    click.echo(f"{path} applied ({len(data['sites']) - len(skipped)} sites)")


@dni.command("create-static-number")
@click.option("--number", required=True, help="The number printed in the placement.")
@click.option("--destination", required=True, help="Where its calls are forwarded.")
@click.option("--source", required=True, help="e.g. radio")
@click.option("--medium", required=True, help="e.g. offline")
@click.option("--campaign")
@click.option("--label", help="The placement, e.g. the spot's station and time.")
@click.option("--site", "site_ref", help="Site id or key.")
@click.option("--region", default="US", show_default=True, help="Country for numbers without +.")
@with_appcontext
def create_static_number(number, destination, source, medium, campaign, label, site_ref,
                         region):
    """Create a static number: its calls are credited to its placement."""
    from attribution import static_numbers

    values = dict(number=number, destination=destination, source=source, medium=medium,
                  campaign=campaign, label=label,
                  site_id=find_site(site_ref).id if site_ref else None)
    try:
        row = static_numbers.create_static_number(db.session, values, region)
    except CatalogError as exc:
        fail(f"{exc}: {json.dumps(exc.fields)}")
    db.session.commit()
    services().routes.invalidate()  # this process's cache; others re-read within seconds
    click.echo(f"static number {row.id} created: {row.number} -> {row.destination}")


@dni.command("pool-status")
@click.argument("pool_id", type=int, required=False)
@with_appcontext
def pool_status(pool_id):
    """Show each pool's numbers, leases and counters."""
    query = select(Pool).order_by(Pool.id)
    if pool_id is not None:
        query = query.where(Pool.id == pool_id)
    pools = list(db.session.scalars(query))
    if not pools:
        fail("no such pool" if pool_id is not None else "no pools yet")
    for pool in pools:
        live = services().pools.status(pool.id, now_ms())
        click.echo(f"pool {pool.id} {pool.name!r} (site {pool.site.key}) target {pool.target}")
        click.echo(f"  numbers: {live['idle']} idle ({live['cooling']} cooling down), "
                   f"{live['busy']} leased, {live['retiring']} retiring"
                   + ("" if live["loaded"] else "  [not loaded in Redis]"))
        counters = ", ".join(f"{k} {v}" for k, v in live["counters"].items()) or "none yet"
        click.echo(f"  counters: {counters}")
        click.echo(f"  events waiting to be recorded: {live['recorder_backlog']}")


@dni.command("worker")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@with_appcontext
def worker(once):
    """Record lease history and keep pools loaded (run any number of these)."""
    from dni_server.worker import Worker

    runner = Worker(current_app._get_current_object())
    if once:
        click.echo(f"recorded {runner.run_once()} events")
        return
    click.echo(f"worker {runner.consumer} running; Ctrl-C stops it")
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        runner.stop()


def _sizes(ctx, param, value):
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()] if value else None
    except ValueError:
        raise click.BadParameter("a comma-separated list of whole numbers, e.g. 40,60,80") \
            from None
    if sizes is not None and not all(1 <= size <= 10_000 for size in sizes):
        raise click.BadParameter("each size is 1 to 10,000 numbers")
    return sizes


@dni.command("simulate")
@click.option("--days", type=click.FloatRange(min=0.01, max=60), default=7.0, show_default=True,
              help="Virtual days of traffic.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--sizes", callback=_sizes,
              help="Pool sizes, e.g. 40,60,80 (default: 0.6x to 1.8x the offered load).")
@click.option("--arrivals-per-hour", type=click.FloatRange(min=0), help="New visits per hour.")
@click.option("--lease-seconds", type=click.IntRange(min=10), help="The pools' lease time.")
@click.option("--out", default="bench/out", show_default=True, help="Folder for the chart.")
@with_appcontext
def simulate(days, seed, sizes, arrivals_per_hour, lease_seconds, out):
    """Measure attribution accuracy per pool size on simulated traffic.

    Plays the traffic model through the real pool scripts and matcher on a virtual clock,
    in this service's Redis (under a key prefix of its own, deleted after) and a scratch
    SQLite database: the service's own data is never touched.
    """
    from attribution.simulation import (
        PoolSettings,
        TrafficModel,
        format_phases,
        format_table,
        format_weighed,
        simulate_in_scratch_database,
        write_chart,
    )

    model = TrafficModel() if arrivals_per_hour is None else \
        TrafficModel(arrivals_per_hour=arrivals_per_hour)
    settings = PoolSettings() if lease_seconds is None else PoolSettings(lease_seconds=lease_seconds)
    report = simulate_in_scratch_database(
        services().redis_admin, model=model, settings=settings, days=days, seed=seed,
        sizes=sizes, progress=lambda r: click.echo(f"{r.numbers} numbers: {r.accuracy:.1%}",
                                                   err=True))
    click.echo(format_table(report))
    click.echo(format_phases(report))
    click.echo(format_weighed(report))
    chart = write_chart(report, out)
    click.echo(f"chart: {chart}" if chart else "chart: skipped (matplotlib is not installed)")


# Pay-per-call routing's commands join the group (dni_server/routing_cli.py), and
# conversation insight's (dni_server/insight_cli.py).
from dni_server import insight_cli as _insight_cli  # noqa: E402, F401
from dni_server import numbers_cli as _numbers_cli  # noqa: E402, F401  (issue 19)
from dni_server import routing_cli as _routing_cli  # noqa: E402, F401
