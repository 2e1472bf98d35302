"""No call is lost: Redis down, or SQL down and back."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select

from attribution.models import Call
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


def calls_in(app) -> list[Call]:
    with app.app_context():
        return list(db.session.scalars(select(Call).order_by(Call.id)))


def test_with_redis_down_calls_are_stored_forwarded_and_matched_from_sql(make_app):
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(1))
    session = post_session(app.test_client(), site["key"], "https://x.example/?utm_source=yelp")
    record(app)

    down = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, REDIS_URL="redis://127.0.0.1:1/0")
    response = twilio_post(down.test_client(), "/webhooks/twilio/voice",
                           twilio_call("CA" + "a" * 32, numbers(1)[0]))
    assert ET.fromstring(response.data).find("Dial/Number").text == "+12125550199"
    [call] = calls_in(down)
    assert call.session_id == session.json["session_id"] and call.source == "yelp"
    assert "Redis unavailable" in " ".join(call.explanation["steps"])


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``stop`` cuts every connection, like a dead server."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.running:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_RDWR)

    def stop(self):
        self.running = False
        self.server.close()  # new connections are refused, as by a stopped server
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.open = []

    def start(self):
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stop()
        self.server.close()


@contextlib.contextmanager
def sql_outage_app(make_app, database_url):
    """An app whose SQL can be taken away for real, and a switch to do it."""
    if database_url.startswith("postgresql"):
        parts = urlsplit(database_url)
        proxy = TcpProxy((parts.hostname, parts.port or 5432))
        url = database_url.replace(parts.netloc, f"{parts.username or 'postgres'}@127.0.0.1:"
                                                 f"{proxy.port}")
        app = make_app(DATABASE_URL=url, DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)

        def outage(on: bool):
            with app.app_context():
                db.engine.dispose()
            proxy.stop() if on else proxy.start()

        try:
            yield app, outage
        finally:
            proxy.close()
        return
    path = database_url.removeprefix("sqlite:///")
    app = make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN)

    def outage(on: bool):
        with app.app_context():
            db.engine.dispose()
        if on:  # a directory where the database file was: SQLite cannot open it
            os.rename(path, path + ".away")
            os.mkdir(path)
        else:
            os.rmdir(path)
            os.rename(path + ".away", path)

    try:
        yield app, outage
    finally:
        if os.path.isdir(path):
            shutil.rmtree(path)
            os.rename(path + ".away", path)


def test_with_sql_down_callers_are_forwarded_and_calls_stored_later(make_app, database_url):
    with sql_outage_app(make_app, database_url) as (app, outage):
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        site = make_site(admin)
        make_pool(admin, site, numbers=numbers(1))
        session = post_session(app.test_client(), site["key"], "https://x.example/?utm_source=tv")
        record(app)
        client = app.test_client()
        app.extensions["dni"].routes.routes()  # each process keeps the routes in memory
        sid = "CA" + "b" * 32

        outage(True)
        try:
            answer = twilio_post(client, "/webhooks/twilio/voice",
                                 twilio_call(sid, numbers(1)[0]))
            assert answer.status_code == 200
            assert ET.fromstring(answer.data).find("Dial/Number").text == "+12125550199"
            done = twilio_post(client, "/webhooks/twilio/status", twilio_call(
                sid, numbers(1)[0], CallStatus="completed", CallDuration="75",
                SequenceNumber="2"))
            assert done.status_code == 204
            assert app.extensions["dni"].inbox.waiting() == 2
        finally:
            outage(False)

        assert record(app) >= 2  # the worker stores what waited
        [call] = calls_in(app)
        assert (call.provider_call_id, call.status, call.duration) == (sid, "completed", 75)
        assert call.session_id == session.json["session_id"] and call.source == "tv"
        assert app.extensions["dni"].inbox.waiting() == 0


def test_a_process_started_during_an_sql_outage_forwards_from_the_redis_copy(
        make_app, database_url):
    with sql_outage_app(make_app, database_url) as (app, outage):
        admin = AdminClient(app.test_client(), ADMIN_TOKEN)
        make_pool(admin, make_site(admin), numbers=numbers(1))
        app.extensions["dni"].routes.routes()  # writes the Redis copy
        outage(True)
        try:
            fresh = app.extensions["dni"].routes.__class__(
                app.extensions["dni"].session_factory, app.extensions["dni"].redis,
                app.extensions["dni"].settings.redis_prefix)
            assert fresh.route(numbers(1)[0]).destination == "+12125550199"
        finally:
            outage(False)


@pytest.mark.parametrize("broken", ["sql", "sql+redis"])
def test_events_wait_in_a_spool_file_when_redis_is_down_too(app, tmp_path, broken):
    from attribution.calls import CallEventIn
    from attribution.inbox import CallInbox
    from pools.models import utcnow

    inbox = CallInbox(app.extensions["dni"].redis if broken == "sql" else
                      Redis(port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0)),
                      "dni", str(tmp_path / "spool.jsonl"))
    event = CallEventIn(provider="api", provider_call_id="x1", event_key="x1:1", kind="api",
                        occurred_at=utcnow(), from_raw="+14158675309", to_raw="+12125550123")
    where = inbox.push(event)
    assert where == ("redis" if broken == "sql" else "spool")
    with app.app_context():
        replayed = CallInbox(app.extensions["dni"].redis, "dni", str(tmp_path / "spool.jsonl")
                             ).replay(db.session)
    assert replayed == 1
    [call] = calls_in(app)
    assert call.provider_call_id == "x1"
