"""``flask --app wsgi dni numbers ...``: search, buy and release numbers through a carrier.

The same services as the admin API (``attribution.numbers``): buying is idempotent by its
key (printed, and given again with ``--key`` to resume or check a run), and each number is
reported bought, added or failed.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid

import click
from flask import current_app
from flask.cli import with_appcontext
from tqdm import tqdm

from attribution.conversions.credentials import CredentialBox
from attribution.numbers import accounts, provisioning, release
from attribution.numbers.accounts import AccountError, CarrierUrls
from attribution.numbers.carriers import CarrierError, SearchQuery, Webhooks
from attribution.numbers.models import ProvisionedNumber
from attribution.numbers.upkeep import NumberUpkeep
from dni_server.cli import dni, fail
from dni_server.extensions import db
from dni_server.timefmt import now_ms
from pools.models import Pool


@dni.group("numbers")
def numbers():
    """Buy and release tracking numbers through a carrier account."""


def _services():
    services = current_app.extensions["dni"]
    settings = services.settings
    box = CredentialBox(settings.credentials_keys)
    urls = CarrierUrls(twilio=settings.twilio_api_url, telnyx=settings.telnyx_api_url)
    return services, box, urls


def _account(ref: str):
    try:
        return accounts.get(db.session, ref)
    except AccountError as exc:
        fail(exc.message)


def search_options(command):
    for option in reversed([
        click.option("--country", default="US", show_default=True),
        click.option("--area-code"), click.option("--contains"),
        click.option("--region", help="State or province, e.g. CA."),
        click.option("--toll-free", is_flag=True),
    ]):
        command = option(command)
    return command


@numbers.command("search")
@click.argument("account_ref")
@search_options
@click.option("--limit", type=click.IntRange(1, 50), default=20, show_default=True)
@with_appcontext
def search(account_ref, country, area_code, contains, region, toll_free, limit):
    """List numbers the carrier has for sale."""
    _, box, urls = _services()
    try:
        api = accounts.api_for(_account(account_ref), box, urls)
        found = api.search(SearchQuery(country, area_code, contains, region, toll_free, limit))
    except (AccountError, CarrierError) as exc:
        fail(exc.message)
    for item in found:
        click.echo(f"{item.number}\t{item.locality or ''}\t{item.region or ''}")
    click.echo(f"{len(found)} numbers", err=True)


@numbers.command("buy")
@click.argument("pool_id", type=int)
@click.option("--account", "account_ref", required=True, help="Carrier account id or name.")
@click.option("--count", type=click.IntRange(1, provisioning.MAX_COUNT), required=True)
@search_options
@click.option("--key", help="Idempotency key: give the printed one again to replay a run.")
@click.option("--public-url", help="This service's public URL (default DNI_PUBLIC_URL).")
@with_appcontext
def buy(pool_id, account_ref, count, country, area_code, contains, region, toll_free, key,
        public_url):
    """Buy numbers into a pool, with a progress bar and a line per number."""
    services, box, urls = _services()
    pool = db.session.get(Pool, pool_id)
    if pool is None:
        fail(f"no pool {pool_id}")
    base = (public_url or services.settings.public_url or "").rstrip("/")
    if not base:
        fail("set DNI_PUBLIC_URL (or --public-url): Twilio needs this service's webhook URL")
    account = _account(account_ref)
    key = key or uuid.uuid4().hex
    click.echo(f"idempotency key {key}", err=True)
    with tqdm(total=count, unit="number", file=sys.stderr) as bar:
        try:
            report = provisioning.provision(
                db.session, services.pools, pool, account, accounts.api_for(account, box, urls),
                count=count, query=SearchQuery(country, area_code, contains, region, toll_free),
                request_key=f"pool:{pool.id}:{key}",
                hooks=Webhooks(f"{base}/webhooks/twilio/voice",
                               f"{base}/webhooks/twilio/status"),
                now_ms=now_ms(), on_number=lambda row: bar.update(row.state == "added"))
        except (AccountError, CarrierError) as exc:
            fail(exc.message)
    _report(report.numbers)
    if report.replayed:
        click.echo("a replay of an earlier run with this key: nothing new was bought", err=True)
    if report.shortfall:
        click.echo(f"{report.shortfall} of {count} not bought", err=True)


@numbers.command("release")
@click.argument("number_ids", type=int, nargs=-1, required=True)
@click.option("--quarantine-hours", type=click.IntRange(0, 90 * 24), default=168,
              show_default=True, help="Wait at least this long before releasing.")
@with_appcontext
def release_numbers(number_ids, quarantine_hours):
    """Retire bought numbers (ids from GET /v1/provisioned-numbers) for release: the worker
    releases each at the carrier once no visitor may still call it."""
    services, _, _ = _services()
    done = []
    for number_id in number_ids:
        row = db.session.get(ProvisionedNumber, number_id)
        if row is None:
            click.echo(f"{number_id}\t-\tunknown")
            continue
        try:
            release.retire(db.session, services.pools, row,
                           quarantine=dt.timedelta(hours=quarantine_hours), now_ms=now_ms())
            db.session.commit()
        except AccountError as exc:
            db.session.rollback()
            click.echo(f"{number_id}\t{row.number}\t{exc.message}")
            continue
        done.append(row)
    _report(done)


@numbers.command("upkeep")
@with_appcontext
def upkeep():
    """One pass of the worker's part now: reconcile interrupted buys, release what is due."""
    services = current_app.extensions["dni"]
    runner = NumberUpkeep.from_settings(services.session_factory, services.pools,
                                        services.settings)
    counts = runner.run_once(now_ms(), force=True)
    click.echo(" ".join(f"{name}={value}" for name, value in counts.items()))


def _report(rows) -> None:
    for row in rows:
        when = row.release_after.isoformat() if row.release_after else ""
        click.echo("\t".join([str(row.id), row.number, row.state, when, row.error or ""]))
