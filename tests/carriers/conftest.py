"""Fixtures: the app served over real HTTP, with a Twilio and a Telnyx simulator pointed at it.

The Telnyx simulator listens first (the app is built with it as its Telnyx API URL, and
its public key as the one Telnyx signs with); the app then listens on a port of this test
process's own block (tests/ports.py), and both simulators are given its URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from ports import free_port
from werkzeug.serving import make_server

from carriers.telnyx_sim import TelnyxSimulator
from carriers.twilio_sim import TwilioSimulator
from factories import ADMIN_TOKEN, TWILIO_TOKEN, AdminClient, make_site, numbers

TELNYX_API_KEY = "KEY_carrier_sim"


@dataclass
class Carriers:
    """The app over HTTP (``url``, ``app``, ``admin``), and the simulators pointed at it."""

    url: str
    app: object
    admin: AdminClient
    twilio: TwilioSimulator
    telnyx: TelnyxSimulator
    backends: tuple[str, ...] = ()  # the app servers behind ``url``, when several

    def make_pool(self, **fields) -> dict:
        """A site and a pool of three numbers forwarding to +12125550199."""
        site = make_site(self.admin)
        body = {"site": site["key"], "name": "Main", "target": "+18005550100",
                "destination": "+12125550199", "numbers": numbers(3)} | fields
        response = self.admin.post("/v1/pools", json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json() | {"site_key": site["key"]}

    def call_detail(self, ref: str) -> dict:
        response = self.admin.get(f"/v1/calls/{ref}")
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def serve(app) -> tuple[str, object, threading.Thread]:
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server, thread


@pytest.fixture
def telnyx_options():
    """Override in a test module to build the Telnyx simulator differently."""
    return {}


@pytest.fixture
def carriers(make_app, telnyx_options):
    telnyx = TelnyxSimulator(free_port(), api_key=TELNYX_API_KEY, **telnyx_options)
    app = make_app(DNI_REDIS_TIMEOUT_MS="2000", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                   DNI_TELNYX_PUBLIC_KEY=telnyx.public_key, DNI_TELNYX_API_KEY=TELNYX_API_KEY,
                   DNI_TELNYX_API_URL=telnyx.url)
    # Commands the simulator refuses are not retried for seconds on end.
    app.extensions["dni"].commands.delays = (0.05, 0.1, 0.2)
    url, server, thread = serve(app)
    telnyx.webhook_url = url + "/webhooks/telnyx"
    twilio = TwilioSimulator(url, TWILIO_TOKEN)
    try:
        yield Carriers(url, app, AdminClient(app.test_client(), ADMIN_TOKEN), twilio, telnyx)
    finally:
        twilio.http.close()
        telnyx.close()
        server.shutdown()
        thread.join(5)


PUBLIC_URL = "https://dni.example"


@pytest.fixture
def two_servers(make_app, telnyx_options):
    """Two app servers on the same Redis and SQL behind one public URL: the simulators
    send each request to the next server in turn, as a load balancer would."""
    telnyx = TelnyxSimulator(free_port(), api_key=TELNYX_API_KEY, **telnyx_options)
    served, urls = [], []
    for _ in range(2):
        app = make_app(DNI_REDIS_TIMEOUT_MS="2000", DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
                       DNI_TELNYX_PUBLIC_KEY=telnyx.public_key,
                       DNI_TELNYX_API_KEY=TELNYX_API_KEY, DNI_TELNYX_API_URL=telnyx.url,
                       DNI_PUBLIC_URL=PUBLIC_URL)
        app.extensions["dni"].commands.delays = (0.05, 0.1, 0.2)
        url, server, thread = serve(app)
        served.append((app, server, thread))
        urls.append(url)
    telnyx.webhook_url = [url + "/webhooks/telnyx" for url in urls]
    twilio = TwilioSimulator(PUBLIC_URL, TWILIO_TOKEN, backends=urls)
    first = served[0][0]
    try:
        yield Carriers(PUBLIC_URL, first, AdminClient(first.test_client(), ADMIN_TOKEN), twilio,
                       telnyx, tuple(urls))
    finally:
        twilio.http.close()
        telnyx.close()
        for _, server, thread in served:
            server.shutdown()
            thread.join(5)
