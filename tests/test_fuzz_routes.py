"""Property tests (issue 11, F9): whatever a query string or a signed carrier webhook holds,
the answer is never a 5xx.

Every GET route of the app (read from its url_map, ids filled with rows that exist, signed in
as admin on both the API and the dashboard) gets arbitrary values in every query parameter
the code reads; each carrier webhook gets arbitrary values in every field, signed as the
carrier signs. Seeded and bounded, so a run is repeatable and takes well under a minute:

    DNI_FUZZ_EXAMPLES=300 .venv/bin/python -m pytest -p no:xdist tests/test_fuzz_routes.py
"""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import json
import os
import pathlib
import re
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from test_security_inputs import log_in
from test_webhooks import TELNYX_PUBLIC, TELNYX_SEED, telnyx_event

from factories import (
    ADMIN_TOKEN,
    TWILIO_TOKEN,
    AdminClient,
    make_pool,
    make_site,
    numbers,
    post_session,
    twilio_call,
    twilio_post,
)

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("DNI_FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("DNI_FUZZ_SEED", "20261206"))
SOURCE = pathlib.Path(__file__).resolve().parent.parent / "dni_server"
# werkzeug's url_for options: values once passed through to it from the query string.
URL_FOR_OPTIONS = ("_method", "_external", "_anchor", "_scheme")
SKIPPED_ENDPOINTS = {"static"}  # files from disk: nothing is parsed


def fuzz_settings(test):
    return seed(SEED)(settings(max_examples=EXAMPLES, deadline=None, database=None,
                               suppress_health_check=list(HealthCheck))(test))


# -- values ----------------------------------------------------------------------------------

ODD_TEXT = ["", " ", "\u00b2", "\u0663", "\uff11", "1\u00b2", "-1", "0", "1e9", "NaN", "inf",
            "9" * 25, "9" * 5000, "99999999999999999999999", "0001-01-01", "9999-12-31",
            "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30",
            "2026-05-01T10:00:00Z", "2026-05-01", "true", "null", "[]", "{}", "%00", "\x00",
            "a,b,,c", "source,medium,day,week,month,campaign,keyword", "../..", "'\";--",
            "\u202e", "😀", "x" * 3000]
# Dates and times near both ends of the calendar, moved by up to 14 hours either way.
EDGE_DATES = (st.dates(max_value=dt.date(1, 2, 1)) | st.dates(min_value=dt.date(9999, 11, 1))
              | st.dates())
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
EDGE_TIMES = st.builds(lambda day, zone: dt.datetime.combine(day, dt.time(), zone).isoformat(),
                       EDGE_DATES, OFFSETS)
UNICODE_DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6)
HUGE_NUMBERS = st.integers(min_value=2**31 - 2, max_value=10**30).map(str)
QUERY_VALUES = st.one_of(st.sampled_from(ODD_TEXT), UNICODE_DIGITS, HUGE_NUMBERS,
                         EDGE_DATES.map(str), EDGE_TIMES, st.text(max_size=40))


def query_parameter_names(app) -> list[str]:
    """Every name a query string may carry: the OpenAPI document's query parameters, the
    quoted names on the lines of dni_server/ that read ``args`` (or an ``..._arg(`` helper),
    and url_for's own options."""
    names = set(URL_FOR_OPTIONS)
    spec = app.test_client().get("/openapi.json").get_json()
    for item in spec["paths"].values():
        for operation in item.values():
            names.update(p["name"] for p in (operation.get("parameters") or [])
                         if isinstance(p, dict) and p.get("in") == "query")
    for path in SOURCE.rglob("*.py"):
        if "migrations" not in path.parts:
            names |= names_read(path.read_text(encoding="utf-8"))
    return sorted(names)


# -- the data every route finds ----------------------------------------------------------------


@pytest.fixture
def fuzz_app(make_app):
    return make_app(DNI_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, DNI_TELNYX_PUBLIC_KEY=TELNYX_PUBLIC)


@pytest.fixture
def world(fuzz_app):
    """A site, pool, session, call, static number and token: ids in paths find something."""
    admin = AdminClient(fuzz_app.test_client(), ADMIN_TOKEN)
    site = make_site(admin, domains=["shop.example"])
    pool = make_pool(admin, site, numbers=numbers(3))
    session = post_session(fuzz_app.test_client(), site["key"],
                           "https://shop.example/?utm_source=google").get_json()
    call = admin.post("/v1/calls", json={"call_id": "CA-fuzz", "from": "+14158675309",
                                         "to": numbers(1)[0],
                                         "started_at": "2026-05-01T10:00:00Z"}).get_json()
    static = admin.post("/v1/static-numbers", json={
        "number": "+18005550177", "destination": "+12125550199", "source": "radio",
        "medium": "offline"}).get_json()
    token = admin.post("/v1/tokens", json={"name": "fuzz", "scope": "read_only"}).get_json()
    return {"site_id": site["id"], "pool_id": pool["id"], "call_id": call["id"],
            "call_ref": call["id"], "static_id": static["id"], "token_id": token.get("id", 1),
            "session_id": session["session_id"]}


def names_read(source: str) -> set[str]:
    """The quoted names on the lines of ``source`` that read ``args`` or an ``..._arg(``."""
    names: set[str] = set()
    for line in source.splitlines():
        if "args" in line or "_arg(" in line:
            names.update(re.findall(r"""["']([a-z][a-z_]{0,30})["']""", line))
    return names


def names_of_view(view, depth: int = 2) -> set[str]:
    """The query parameters a view reads itself or through the service's functions it calls
    (``depth`` calls deep): a route's own parameters get most of the examples."""
    try:
        source = inspect.getsource(view)
    except (OSError, TypeError):
        return set()
    names = names_read(source)
    if depth:
        for word in set(re.findall(r"\b([A-Za-z_]\w*)\(", source)):
            called = view.__globals__.get(word) if hasattr(view, "__globals__") else None
            if inspect.isfunction(called) and called.__module__.startswith("dni_server"):
                names |= names_of_view(called, depth - 1)
    return names


def get_routes(app, world: dict) -> list[tuple[str, list[str]]]:
    """Every GET route, its path arguments set to rows that exist (or 1), with the query
    parameters its view reads."""
    routes = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if "GET" not in rule.methods or rule.endpoint in SKIPPED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(world.get(m.group(1), 1)), rule.rule)
        routes.append((path, sorted(names_of_view(app.view_functions[rule.endpoint]))))
    return routes


# -- query strings -----------------------------------------------------------------------------


def test_no_query_string_gives_any_get_route_a_5xx(fuzz_app, world):
    client = log_in(fuzz_app.test_client())  # the dashboard's cookie ...
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # ... and the API's token
    names = query_parameter_names(fuzz_app)
    routes = get_routes(fuzz_app, world)
    assert len(routes) >= 30 and {"start", "end", "call", "delivery", "page"} <= set(names)
    assert {"call", "destination"} <= set(dict(routes)["/v1/conversions/deliveries"])
    failures: list[str] = []

    def sweep(path: str, own: list[str]) -> None:
        # Mostly the route's own parameters, and any others besides.
        own_query = st.dictionaries(st.sampled_from(own), QUERY_VALUES, max_size=3) \
            if own else st.just({})
        other_query = st.dictionaries(st.sampled_from(names), QUERY_VALUES, max_size=3)

        @fuzz_settings
        @given(query=st.builds(lambda a, b: b | a, own_query, other_query))
        def exercise(query):
            response = client.get(path, query_string=query, headers=headers)
            if response.status_code >= 500:
                failures.append(f"GET {path} {query!r}: {response.status_code} "
                                f"{response.get_data(as_text=True)[:200]}")

        exercise()

    for path, own in routes:
        sweep(path, own)
    assert not failures, "\n".join(failures[:20])


# -- carrier webhooks ----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
    | st.sampled_from(ODD_TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
TELNYX_FIELDS = ["event_type", "id", "occurred_at", "record_type"]
TELNYX_PAYLOAD_FIELDS = ["call_control_id", "call_leg_id", "call_session_id", "from", "to",
                         "direction", "hangup_cause", "hangup_source", "state"]
TWILIO_FIELDS = ["CallSid", "ParentCallSid", "From", "To", "CallStatus", "CallDuration",
                 "SequenceNumber", "Timestamp", "DialCallSid", "DialCallStatus",
                 "DialCallDuration", "RecordingSid", "RecordingUrl", "FromCountry",
                 "FromState", "FromCity", "Direction"]
TWILIO_PATHS = ["/webhooks/twilio/voice", "/webhooks/twilio/status", "/webhooks/twilio/dial",
                "/webhooks/twilio/recording"]


def signed_telnyx(client, raw: bytes):
    stamp = str(int(time.time()))
    signature = Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).sign(
        stamp.encode() + b"|" + raw)
    return client.post("/webhooks/telnyx", data=raw, headers={
        "Content-Type": "application/json", "telnyx-timestamp": stamp,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode()})


def test_no_signed_telnyx_event_gives_a_5xx(fuzz_app, world):
    client = fuzz_app.test_client()
    failures: list[str] = []
    kinds = st.sampled_from(["call.initiated", "call.answered", "call.hangup"])

    @fuzz_settings
    @given(kind=kinds, data_fields=st.dictionaries(st.sampled_from(TELNYX_FIELDS), JSON_VALUES,
                                                   max_size=2),
           payload_fields=st.dictionaries(st.sampled_from(TELNYX_PAYLOAD_FIELDS), JSON_VALUES,
                                          min_size=1, max_size=4))
    def exercise(kind, data_fields, payload_fields):
        body = telnyx_event(kind, "fuzz", "2026-05-01T10:00:00Z")
        body["data"].update(data_fields)
        body["data"]["payload"].update(payload_fields)
        response = signed_telnyx(client, json.dumps(body).encode())
        if response.status_code != 204:
            failures.append(f"{body!r}: {response.status_code} {response.get_data()[:200]!r}")

    exercise()
    assert not failures, "\n".join(failures[:20])


def test_no_signed_twilio_callback_gives_a_5xx(fuzz_app, world):
    client = fuzz_app.test_client()
    failures: list[str] = []
    # Form values are always text.
    form_text = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=40),
                          st.integers(min_value=-(10**30), max_value=10**30).map(str))

    @fuzz_settings
    @given(path=st.sampled_from(TWILIO_PATHS),
           fields=st.dictionaries(st.sampled_from(TWILIO_FIELDS), form_text, min_size=1,
                                  max_size=5))
    def exercise(path, fields):
        params = twilio_call("CA" + "9" * 32, numbers(1)[0]) | fields
        response = twilio_post(client, path, params)
        allowed = (200, 422) if path.endswith("voice") else (200, 204)  # 422: no CallSid
        if response.status_code not in allowed:
            failures.append(f"{path} {params!r}: {response.status_code} "
                            f"{response.get_data()[:200]!r}")

    exercise()
    assert not failures, "\n".join(failures[:20])
