"""SQL statements per new call: the voice webhook is the hot path of a call arriving.

Counts what the engine executes (SQLAlchemy's ``before_cursor_execute``) for one Twilio
voice webhook that creates a call, so a change that adds lookups shows up here as a
failing bound rather than as a slower benchmark months later.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select

from attribution.models import Call, CallEvent
from dni_server.extensions import db
from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    post_session,
    record,
    twilio_call,
    twilio_post,
)


@contextmanager
def statements(app):
    """Collect every statement the app's engine sends (savepoints and COMMIT included)."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    def commit(conn):
        seen.append("COMMIT")

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "commit", commit)


def listing(seen: list[str]) -> str:
    return "\n".join(f"{i + 1:2}. {re.sub(r'SELECT .*? FROM', 'SELECT … FROM', s)[:150]}"
                     for i, s in enumerate(seen))


@pytest.fixture
def twilio_app(make_app):
    return make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)


@pytest.fixture
def admin(twilio_app):
    return AdminClient(twilio_app.test_client(), ADMIN_TOKEN)


@pytest.fixture
def site(admin):
    return make_site(admin, timezone="America/New_York")


@pytest.fixture
def pool(admin, site):
    return make_pool(admin, site, numbers=numbers(2))


def new_call(app, sid: str, to: str, caller: str = "+14158675309") -> list[str]:
    """Send one voice webhook for a call not seen before; the statements it ran.

    The recorder has run and the route map is loaded, as in a running service: what is
    counted is the call's own cost, not those per-process or per-lease chores.
    """
    record(app)
    app.extensions["dni"].routes.routes()
    with statements(app) as seen:
        response = twilio_post(app.test_client(), "/webhooks/twilio/voice",
                               twilio_call(sid, to, caller))
    assert response.status_code == 200 and b"<Response>" in response.data
    return seen


def only_call(app, sid: str) -> Call:
    with app.app_context():
        return db.session.scalar(select(Call).where(Call.provider_call_id == sid))


# Bounds: the event/call lookup, matching (tracking number, leases, visit), the owner with
# its site, the caller's earlier calls, one savepoint around the call and event inserts, and
# the commit. Before this was counted, a session call ran 22.
def test_a_new_call_to_a_session_number(twilio_app, site, pool):
    number = post_session(twilio_app.test_client(), site["key"]).get_json()["numbers"][0]
    seen = new_call(twilio_app, "CA" + "1" * 32, number["number"])
    assert len(seen) <= 11, listing(seen)
    call = only_call(twilio_app, "CA" + "1" * 32)
    assert (call.method, call.pool_id, call.site_id, call.status, call.qualified) == (
        "session", pool["id"], site["id"], "ringing", True)
    assert call.session_id is not None and call.repeat_caller is False

    # A repeat caller reads first touch and the latest earlier call in the same query.
    seen = new_call(twilio_app, "CA" + "2" * 32, number["number"])
    assert len(seen) <= 11, listing(seen)
    again = only_call(twilio_app, "CA" + "2" * 32)
    assert (again.repeat_caller, again.first_call_id) == (True, call.id)
    assert again.first_touch["session_id"] == call.session_id


def test_a_new_call_to_a_pool_number_nobody_holds(twilio_app, site, pool):
    """The benchmark's case: no visit to read."""
    seen = new_call(twilio_app, "CA" + "3" * 32, numbers(2)[1])
    assert len(seen) <= 10, listing(seen)
    call = only_call(twilio_app, "CA" + "3" * 32)
    assert (call.method, call.pool_id, call.site_id) == ("unattributed", pool["id"], site["id"])


def test_a_new_call_to_a_static_number(twilio_app, admin, site):
    created = admin.post("/v1/static-numbers", json={
        "number": "+18005550102", "destination": "+12125550199", "source": "radio",
        "medium": "offline", "label": "WXYZ 7am", "site": site["key"]})
    assert created.status_code == 201, created.get_json()
    seen = new_call(twilio_app, "CA" + "4" * 32, "+18005550102")
    assert len(seen) <= 10, listing(seen)
    call = only_call(twilio_app, "CA" + "4" * 32)
    assert (call.method, call.static_number_id, call.source, call.label) == (
        "static", created.get_json()["id"], "radio", "WXYZ 7am")
    assert call.explanation["steps"] == [
        f"+18005550102 is static number {call.static_number_id} (WXYZ 7am)"]


def test_a_new_call_to_an_unknown_number(twilio_app, pool):
    seen = new_call(twilio_app, "CA" + "5" * 32, "+16505550999")
    assert len(seen) <= 9, listing(seen)
    assert only_call(twilio_app, "CA" + "5" * 32).qualification_failures == ["unattributed"]


def test_a_repeated_webhook_reads_two_rows_and_writes_nothing(twilio_app, pool):
    new_call(twilio_app, "CA" + "6" * 32, numbers(2)[0])
    seen = new_call(twilio_app, "CA" + "6" * 32, numbers(2)[0])
    assert len(seen) <= 3, listing(seen)
    assert not [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE"))], listing(seen)


@pytest.mark.parametrize("racer_status", ["ringing", "in-progress"])
def test_a_call_created_by_another_worker_meanwhile_is_used(twilio_app, pool, racer_status):
    """Lose the race on purpose: just before this request inserts its call, another request
    (its own session and connection, committed) stores the same call. This one must fall
    back to that row: one call, and its own event only if it is a different one."""
    sid, number = "CA" + "7" * 32, numbers(2)[0]
    with twilio_app.app_context():
        engine = db.engine
    raced = []

    def race(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SAVEPOINT") and not raced:
            raced.append(True)
            # Another thread: its own app context, session and connection, as a worker has.
            with ThreadPoolExecutor(1) as other:
                answer = other.submit(twilio_post, twilio_app.test_client(),
                                      "/webhooks/twilio/voice",
                                      twilio_call(sid, number, CallStatus=racer_status)).result()
            raced.append(answer.status_code)

    event.listen(engine, "before_cursor_execute", race)
    try:
        response = twilio_post(twilio_app.test_client(), "/webhooks/twilio/voice",
                               twilio_call(sid, number))
    finally:
        event.remove(engine, "before_cursor_execute", race)
    assert raced == [True, 200] and response.status_code == 200 and b"<Dial" in response.data
    with twilio_app.app_context():
        [call] = db.session.scalars(select(Call).where(Call.provider_call_id == sid)).all()
        events = db.session.scalars(select(CallEvent).where(CallEvent.call_id == call.id)).all()
    same = racer_status == "ringing"
    assert len(events) == (1 if same else 2)
    assert call.status == racer_status  # a late "ringing" never overwrites in-progress
    assert call.qualification_failures is not None and call.method == "unattributed"
