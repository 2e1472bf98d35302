"""``flask --app wsgi dni create-buyer | create-plan | buyers``: pay-per-call routing.

Buyers and plans are given as the API's JSON (a file, or ``-`` for standard input) and go
through the same checks; ``buyers`` shows each buyer's live calls and today's cap use.
"""

from __future__ import annotations

import datetime as dt
import json

import click
from flask.cli import with_appcontext
from marshmallow import ValidationError
from sqlalchemy import select

from dni_server.api.routing_schemas import BuyerSchema, RoutingPlanSchema
from dni_server.cli import dni, fail
from dni_server.extensions import db, services
from routing import admin
from routing.capacity import Capacity
from routing.models import Buyer


def read_json(source) -> dict:
    try:
        data = json.load(source)
    except json.JSONDecodeError as exc:
        fail(f"not JSON: {exc}")
    if not isinstance(data, dict):
        fail("give one JSON object")
    return data


def save(schema, saver, source) -> object:
    try:
        row = saver(db.session, schema.load(read_json(source)))
    except ValidationError as exc:
        fail(f"invalid: {json.dumps(exc.messages)}")
    except admin.RoutingError as exc:
        fail(f"{exc}: {json.dumps(exc.fields)}")
    db.session.commit()
    return row


@dni.command("create-buyer")
@click.argument("source", type=click.File("r"))
@with_appcontext
def create_buyer(source):
    """Create a buyer from its JSON (as POST /v1/buyers takes it; - reads standard input)."""
    row = save(BuyerSchema(), admin.save_buyer, source)
    click.echo(f"buyer {row.id} created: {row.name}")


@dni.command("create-plan")
@click.argument("source", type=click.File("r"))
@with_appcontext
def create_plan(source):
    """Create a routing plan from its JSON (as POST /v1/routing-plans takes it)."""
    row = save(RoutingPlanSchema(), admin.save_plan, source)
    click.echo(f"routing plan {row.id} created: {row.name}")


@dni.command("buyers")
@with_appcontext
def buyers():
    """Each buyer: live calls against its concurrency, and today's use of its day caps."""
    s = services()
    capacity = Capacity(s.redis_admin, s.settings.redis_prefix)
    now = dt.datetime.now(dt.UTC)
    click.echo(f"{'id':>4}  {'name':24} {'state':7} {'live':>9}  today")
    for row in db.session.scalars(select(Buyer).order_by(Buyer.id)):
        spec = row.spec
        used = capacity.usage(row.id, spec, now)
        caps = spec.get("caps") or {}
        live = f"{used['live']}/{caps.get('concurrency', '-')}"
        today = used["counts"]["day"]
        parts = []
        for metric in ("calls", "connections", "conversions", "revenue"):
            cap = (caps.get(metric) or {}).get("day")
            parts.append(f"{metric} {today[metric]}" + (f"/{cap}" if cap is not None else ""))
        state = "paused" if row.paused else "active"
        click.echo(f"{row.id:>4}  {row.name[:24]:24} {state:7} {live:>9}  {', '.join(parts)}")
