"""Fixtures: a receiver, a site with a pool, and a subscription pointing at the receiver."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from attribution.webhooks.delivery import WebhookDeliverer, WebhookPolicy
from attribution.webhooks.models import WebhookDelivery
from factories import make_pool, make_site, numbers
from webhooks_out.receiver import Receiver

ALL_CALL_EVENTS = ["call.started", "call.completed", "call.qualified", "call.disqualified",
                   "call.converted"]


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


def subscribe(admin, site, receiver, events=None, **fields) -> dict:
    response = admin.post("/v1/webhooks", json={
        "site": site["key"], "url": receiver.url, "events": events or ALL_CALL_EVENTS,
        **fields})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    receiver.secret = body["secret"]
    return body


@pytest.fixture
def setup(app, admin, receiver):
    """(site, pool, subscription) with every call event going to ``receiver``."""
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(3))
    return site, pool, subscribe(admin, site, receiver)


def deliverer(app, render=True, **policy) -> WebhookDeliverer:
    from dni_server.api.webhook_subscriptions import call_renderer

    services = app.extensions["dni"]
    policy = {"base_delay": 10, "max_attempts": 5, "timeout": 5} | policy
    return WebhookDeliverer(services.session_factory, WebhookPolicy(**policy),
                            render_call=call_renderer(app) if render else None,
                            allow_hosts=services.settings.outbound_allow_hosts,
                            credentials_keys=services.settings.credentials_keys)


def pool_number(admin, pool) -> str:
    return admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]


def post_call(admin, call_id: str, to: str, *, status="completed", duration=90,
              started_at="2026-03-02T14:00:00Z") -> dict:
    response = admin.post("/v1/calls", json={
        "call_id": call_id, "from": "+14158675309", "to": to, "started_at": started_at,
        "duration": duration, "status": status})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def rows(app, **where) -> list[WebhookDelivery]:
    with app.extensions["dni"].session_factory() as db:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        for name, value in where.items():
            query = query.where(getattr(WebhookDelivery, name) == value)
        return list(db.scalars(query))


def drain(worker, start: dt.datetime, passes: int = 60, step: float = 3600) -> dt.datetime:
    """Run passes with a virtual clock moving ``step`` seconds each, until nothing is due."""
    now = start
    for _ in range(passes):
        worker.run_once(now)
        now += dt.timedelta(seconds=step)
    return now
