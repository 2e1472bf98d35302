"""Issue 11, F3, F11, F12: conversion destinations, spreadsheet formulas, data at rest.

F3: a stored credential cannot be redirected, internal addresses are refused when a
connection is opened (on the resolved address), raw response bodies are for admins only,
URL userinfo is masked. F11: no CSV the product writes has a cell a spreadsheet reads as a
formula, whatever separator it splits on. F12: the embedded instance folder is private and
destination credentials are encrypted at rest, with key rotation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import socket
import ssl
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import sqlalchemy as sa
from conversions.receivers import GoogleReceiver, MetaReceiver

from attribution.conversions.credentials import CredentialBox, new_key
from attribution.conversions.models import (
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
)
from attribution.conversions.outbound import AddressGuard, ForbiddenAddress, guarded_session
from attribution.models import Call
from dni_server.extensions import db
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers

SECRET = "EAAsuperSECRETtoken-0123456789"
DANGER = "spring;=cmd|' /C calc'!A0;"


def meta_config(base_url: str = "https://graph.facebook.com", **extra) -> dict:
    return {"pixel_id": "1122334455", "access_token": SECRET, "base_url": base_url, **extra}


def create_meta(admin, site, **config) -> dict:
    response = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "meta", "kind": "meta", "config": meta_config(**config)})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def qualified_call(app, admin, site, dest_id: int, name: str = "Lead", **call_fields) -> int:
    """A pool, a rule sending to ``dest_id`` and a qualified call on it; the call's id."""
    pool = make_pool(admin, site, numbers=numbers(2), revenue="120.00")
    rule = admin.post("/v1/conversions/rules", json={
        "site": site["key"], "actions": [{"destination": dest_id, "name": name}]})
    assert rule.status_code == 201, rule.get_json()
    number = admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()  # Meta: < 7 days
    call = admin.post("/v1/calls", json={"call_id": f"c-{dest_id}", "from": "+14158675309",
                                         "to": number, "started_at": started, "duration": 90})
    assert call.status_code == 201, call.get_json()
    call_id = call.get_json()["id"]
    if call_fields:
        with app.app_context():
            row = db.session.get(Call, call_id)
            for name_, value in call_fields.items():
                setattr(row, name_, value)
            db.session.commit()
    return call_id


def token(admin, scope: str, publisher: str | None = None) -> AdminClient:
    body = {"name": f"{scope} token", "scope": scope} | ({"publisher": publisher}
                                                         if publisher else {})
    response = admin.post("/v1/tokens", json=body)
    assert response.status_code == 201, response.get_json()
    return AdminClient(admin.client.application.test_client(), response.get_json()["token"])


def dashboard_login(app, secret: str):
    browser = app.test_client()
    login = browser.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert browser.post("/dashboard/login", data={"token": secret, "csrf_token": csrf}
                        ).status_code == 302
    return browser


# -- F3: where credentials go --------------------------------------------------------------------


def test_changing_a_url_needs_the_credentials_entered_again(admin):
    site = make_site(admin)
    dest = create_meta(admin, site)
    path = f"/v1/conversions/destinations/{dest['id']}"
    shown = dest["config"]
    assert shown["access_token"] == "****6789"
    # The masked token sent back while base_url moves: refused, naming the field.
    moved = admin.patch(path, json={"config": shown | {"base_url": "https://listener.example"}})
    assert moved.status_code == 422, moved.get_json()
    assert "access_token" in moved.get_json()["error"]["fields"]["config"]
    # Dropping base_url moves it too (back to the default host): same answer.
    dropped = admin.patch(path, json={"config": {k: v for k, v in shown.items()
                                                 if k != "base_url"}})
    assert dropped.status_code == 422, dropped.get_json()
    # Entered again with the new URL: accepted.
    again = admin.patch(path, json={"config": shown | {"base_url": "https://listener.example",
                                                       "access_token": "a-new-token-abcd"}})
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["config"]["base_url"] == "https://listener.example"
    # The URL unchanged: a masked value still keeps what is stored.
    kept = admin.patch(path, json={"config": again.get_json()["config"] | {"pixel_id": "42"}})
    assert kept.status_code == 200, kept.get_json()


def test_changing_the_token_url_needs_the_oauth_secrets_again(admin):
    site = make_site(admin)
    with GoogleReceiver() as google:
        created = admin.post("/v1/conversions/destinations", json={
            "site": site["key"], "name": "google", "kind": "google",
            "config": google.refresh_config()})
    assert created.status_code == 201, created.get_json()
    shown = created.get_json()["config"]
    assert shown["token_url"].endswith("/token")  # a URL is shown (userinfo masked), not hidden
    response = admin.patch(f"/v1/conversions/destinations/{created.get_json()['id']}",
                           json={"config": shown | {"token_url": "https://evil.example/t"}})
    assert response.status_code == 422, response.get_json()
    assert {"client_secret", "refresh_token"} <= set(response.get_json()["error"]["fields"]["config"])


@pytest.mark.parametrize("url", [
    "https://graph.facebook.com/#",  # the platform's path would become a fragment
    "https://graph.facebook.com/x#y",
    "https://graph.facebook.com/?x=",  # so would a query
    "https://user:password@graph.facebook.com",
    "https://token@graph.facebook.com",
    "ftp://graph.facebook.com",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "https://graph.facebook.com\\@evil.example",
    "https:///no-host",
])
def test_urls_with_fragment_userinfo_or_another_scheme_are_422(admin, url):
    site = make_site(admin)
    response = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "meta", "kind": "meta", "config": meta_config(url)})
    assert response.status_code == 422, response.get_json()
    assert "config" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.5", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "::1", "::", "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1",
    "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "224.0.0.1",
])
def test_internal_addresses_are_refused_after_resolution(monkeypatch, address):
    def resolve(host, port, *args, **kwargs):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ForbiddenAddress, match="public"):
        AddressGuard().resolve("innocent.example", 443)  # the name looks harmless; its address not
    assert AddressGuard(["innocent.example"]).resolve("innocent.example", 443) == [address]


def test_public_addresses_pass_the_guard(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("157.240.1.35", port)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2a03:2880:f10c:83:face:b00c:0:25de",
                                                      port, 0, 0))])
    assert AddressGuard().resolve("graph.facebook.com", 443) == [
        "157.240.1.35", "2a03:2880:f10c:83:face:b00c:0:25de"]


def test_one_internal_address_among_public_ones_is_refused(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("157.240.1.35", port)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))])
    with pytest.raises(ForbiddenAddress):
        AddressGuard().resolve("rebinding.example", 443)


def test_a_name_resolving_to_loopback_is_refused_when_connecting(monkeypatch):
    """DNS decides at connect time: the session connects only to the address it checked."""
    with MetaReceiver() as meta:
        port = int(meta.url.rsplit(":", 1)[1])
        real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(
            "127.0.0.1" if host == "conversions.example" else host, *a, **k))
        with pytest.raises(ForbiddenAddress):
            guarded_session().post(f"http://conversions.example:{port}/v23.0/1/events", timeout=5)
        assert meta.requests == []
        # Named by the operator (test receivers only): it connects, to the checked address.
        answer = guarded_session(["conversions.example"]).get(
            f"http://conversions.example:{port}/nothing", timeout=5)
        assert answer.status_code in (400, 404) and len(meta.requests) == 1  # it got there


def test_the_worker_never_reaches_an_internal_address(make_app):
    app = make_app(DNI_OUTBOUND_ALLOW_HOSTS="", DNI_CONVERSIONS_SETTLE_SECONDS="0")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    with MetaReceiver() as meta:
        dest = create_meta(admin, site, base_url=meta.url.replace("127.0.0.1", "localhost"))
        qualified_call(app, admin, site, dest["id"], fbclid="IwAR-click")
        from dni_server.worker import Worker
        Worker(app).deliver_conversions()
        assert meta.requests == []  # the access token never left
    with app.app_context():
        row = db.session.scalars(sa.select(ConversionDelivery)).one()
        assert row.status == "failed" and "loopback" in row.last_error


def test_tls_host_names_are_still_verified(tmp_path):
    cert_path = self_signed_localhost(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path)

    class Ok(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        session = guarded_session(["localhost", "127.0.0.1"])
        port = server.server_port
        assert session.get(f"https://localhost:{port}/", verify=cert_path, timeout=5
                           ).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):  # the certificate names localhost
            session.get(f"https://127.0.0.1:{port}/", verify=cert_path, timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def self_signed_localhost(tmp_path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "localhost.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(path)


# -- F3: what the delivery log shows ----------------------------------------------------------


def logged_attempt(app, admin) -> int:
    """A delivery of publisher Acme's call with one logged exchange; the delivery's id."""
    site = make_site(admin)
    dest = create_meta(admin, site)
    qualified_call(app, admin, site, dest["id"], publisher="Acme")
    with app.app_context():
        row = db.session.scalars(sa.select(ConversionDelivery)).one()
        db.session.add(ConversionAttempt(
            delivery_id=row.id, outcome="retry", http_status=503,
            request={"method": "POST", "url": "https://ops:hunter2@graph.example/x",
                     "body": "{\"hashed\": \"phone\"}"},
            response={"status": 503, "body": "redis_version:7.2 INTERNAL-BODY",
                      "error": "ConnectionError: connection reset"}))
        db.session.commit()
        return row.id


def test_response_bodies_are_shown_to_admins_only(app, admin):
    delivery = logged_attempt(app, admin)
    path = f"/v1/conversions/deliveries/{delivery}/attempts"
    full = admin.get(path).get_json()["attempts"][0]
    assert full["response"]["body"] == "redis_version:7.2 INTERNAL-BODY"
    for other in (token(admin, "read_only"), token(admin, "publisher", "Acme")):
        answer = other.get(path)
        assert answer.status_code == 200, answer.get_json()
        attempt = answer.get_json()["attempts"][0]
        assert "INTERNAL-BODY" not in json.dumps(answer.get_json())
        assert "hashed" not in json.dumps(answer.get_json())
        assert attempt["http_status"] == 503 and attempt["response"]["status"] == 503
        assert attempt["response"]["error"] == "ConnectionError"
    reader = admin.post("/v1/tokens", json={"name": "r", "scope": "read_only"}).get_json()
    page = dashboard_login(app, reader["token"]).get(f"/dashboard/conversions?delivery={delivery}")
    assert page.status_code == 200 and "INTERNAL-BODY" not in page.get_data(as_text=True)
    page = dashboard_login(app, ADMIN_TOKEN).get(f"/dashboard/conversions?delivery={delivery}")
    assert "INTERNAL-BODY" in page.get_data(as_text=True)


def test_userinfo_is_masked_wherever_a_url_is_shown(app, admin):
    delivery = logged_attempt(app, admin)
    with app.app_context():  # a row written before userinfo was refused
        row = db.session.scalars(sa.select(ConversionDestination)).one()
        row.config = {**row.config, "base_url": "https://ops:hunter2@graph.example"}
        db.session.commit()
        dest_id = row.id
    answers = [admin.get(f"/v1/conversions/destinations/{dest_id}").get_json(),
               admin.get("/v1/conversions/destinations").get_json(),
               admin.get(f"/v1/conversions/deliveries/{delivery}/attempts").get_json(),
               token(admin, "read_only").get(
                   f"/v1/conversions/deliveries/{delivery}/attempts").get_json()]
    for answer in answers:
        assert "hunter2" not in json.dumps(answer) and "ops:" not in json.dumps(answer)
    assert answers[0]["config"]["base_url"] == "https://****@graph.example"
    assert answers[2]["attempts"][0]["request"]["url"] == "https://****@graph.example/x"
    page = dashboard_login(app, ADMIN_TOKEN).get(f"/dashboard/conversions?delivery={delivery}")
    assert "hunter2" not in page.get_data(as_text=True)


# -- F11: spreadsheets -----------------------------------------------------------------------


def formula_cells(text: str) -> list[str]:
    """Cells some spreadsheet reads as a formula, whatever separator it splits lines on."""
    found = []
    for line in re.split(r"\r\n|\r|\n", text.lstrip("\ufeff")):
        for separator in (",", ";", "\t", "|"):
            for cell in line.split(separator):
                if cell.lstrip(' "')[:1] in tuple("=+-@"):
                    found.append(cell)
    return found


def test_formula_starts_after_any_separator_are_neutralised_in_every_csv(app, admin):
    site = make_site(admin, timezone="America/New_York")
    google = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "google", "kind": "google", "config": {
            "operating_account_id": "1234567890", "conversion_action_id": "555",
            "access_token": "google-access-token-1234"}}).get_json()
    bing = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "bing", "kind": "microsoft", "config": {
            "customer_id": "1", "account_id": "2", "developer_token": "dev-token-123456",
            "access_token": "access-token-123456"}}).get_json()
    pool = make_pool(admin, site, numbers=numbers(2), revenue="120.00")
    rule = admin.post("/v1/conversions/rules", json={"site": site["key"], "actions": [
        {"destination": google["id"], "name": DANGER},
        {"destination": bing["id"], "name": DANGER}]})
    assert rule.status_code == 201, rule.get_json()
    number = admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]
    call = admin.post("/v1/calls", json={"call_id": "csv-1", "from": "+14158675309",
                                         "to": number, "started_at": "2026-03-01T18:45:00Z",
                                         "duration": 90}).get_json()
    with app.app_context():
        row = db.session.get(Call, call["id"])
        row.gclid, row.msclkid, row.campaign, row.source = "EAIaIQ-x", "b1c2d3", DANGER, DANGER
        db.session.commit()
    week = "start=2026-03-01&end=2026-03-07"
    files = {
        "google.csv": admin.get(f"/v1/conversions/export/google.csv?site={site['key']}&{week}"),
        "microsoft.csv": admin.get(
            f"/v1/conversions/export/microsoft.csv?site={site['key']}&{week}"),
        "report csv": admin.get(f"/v1/reports/attribution?{week}&group_by=source,campaign"
                                "&format=csv"),
        "dashboard report.csv": dashboard_login(app, ADMIN_TOKEN).get(
            f"/dashboard/report.csv?{week}&group_by=source,campaign"),
    }
    for name, response in files.items():
        assert response.status_code == 200, (name, response.get_data(as_text=True)[:300])
        text = response.get_data(as_text=True)
        assert "spring;'=cmd|' /C calc'!A0;" in text, (name, text)
        assert formula_cells(text) == [], (name, text)


def test_every_kind_of_formula_start_is_neutralised():
    from attribution.spreadsheet import safe_cell, write_csv

    for raw in ("=1+1", "+1 800 555", "-2", "@SUM(A1)", "\tx", "\rx", "a;=1", "a,+1", "a|-1",
                "a\t@x", "a\n=1", "a; =1", 'a;"=1"', "a;\t=1"):
        assert formula_cells(write_csv([[raw]])) == [], raw
        assert safe_cell(raw) != raw, raw
    assert safe_cell("Qualified call") == "Qualified call"
    assert safe_cell(-12) == -12  # numbers are numbers
    assert write_csv([["a", None, 1]]) == "a,,1\r\n"


# -- F12: data at rest -----------------------------------------------------------------------


def test_the_embedded_instance_folder_and_its_files_are_private(tmp_path):
    from dni_server import create_app

    folder = tmp_path / "instance"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / "admin_token").write_text("left-by-an-older-version-0123456789abcdef")
    os.chmod(folder / "admin_token", 0o644)
    env = {"DNI_WORKER": "false"}
    app = create_app(env, instance_path=str(folder))
    try:
        admin = AdminClient(app.test_client(), app.extensions["dni"].settings.admin_token)
        make_site(admin)  # a write: SQLite's -wal and -shm exist now
        app.extensions["dni"].redis_admin.save()  # Redis writes its snapshot
        names = {p.name for p in folder.iterdir()}
        assert {"dni.sqlite3", "dni.sqlite3-wal", "dni.sqlite3-shm", "redis.rdb", "admin_token",
                "secret_key", "credentials_key"} <= names, names
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for path in folder.iterdir():
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        with app.app_context():
            db.engine.dispose()


def raw_configs(database_url: str) -> list[str]:
    """The config column as the database holds it, as text (portable SQL)."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text(
            "SELECT CAST(config AS TEXT) FROM conversion_destinations ORDER BY id")).scalars())
    engine.dispose()
    return rows


def test_credentials_are_encrypted_in_the_sql_row(app, admin, database_url):
    site = make_site(admin)
    create_meta(admin, site)
    with GoogleReceiver() as google:
        admin.post("/v1/conversions/destinations", json={
            "site": site["key"], "name": "google", "kind": "google",
            "config": google.refresh_config()})
        secrets = [SECRET, *(google.refresh_config()[k] for k in ("client_secret",
                                                                  "refresh_token"))]
    stored = raw_configs(database_url)
    assert len(stored) == 2
    for text in stored:
        assert "fernet:" in text
        for secret in secrets:
            assert secret not in text


def test_credentials_still_reach_the_platform(make_app):
    app = make_app(DNI_CONVERSIONS_SETTLE_SECONDS="0")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    with MetaReceiver() as meta:
        dest = create_meta(admin, site, base_url=meta.url, access_token=meta.ACCESS_TOKEN)
        qualified_call(app, admin, site, dest["id"], fbclid="IwAR-click")
        from dni_server.worker import Worker
        Worker(app).deliver_conversions()
        assert meta.errors == [] and len(meta.events()) == 1


def test_a_new_key_first_still_reads_the_old_ciphertext(make_app, database_url):
    old, new = new_key(), new_key()
    first = make_app(DNI_CREDENTIALS_KEYS=old)
    admin = AdminClient(first.test_client(), ADMIN_TOKEN)
    dest = create_meta(admin, make_site(admin))
    before = raw_configs(database_url)[0]
    rotated = make_app(DNI_CREDENTIALS_KEYS=f"{new},{old}")
    shown = AdminClient(rotated.test_client(), ADMIN_TOKEN).get(
        f"/v1/conversions/destinations/{dest['id']}").get_json()
    assert shown["config"]["access_token"] == "****6789"  # decrypted with the old key
    from dni_server.worker import Worker
    Worker(rotated).conversions.run_once()  # re-encrypts with the first key
    after = raw_configs(database_url)[0]
    assert after != before and SECRET not in after
    stored = json.loads(after)
    assert CredentialBox([new]).open(stored)["access_token"] == SECRET  # the old key may go
    with pytest.raises(ValueError):
        CredentialBox([old]).open(stored)


def test_plain_text_credentials_from_before_are_read_and_then_encrypted(app, admin, database_url):
    site = make_site(admin)
    with app.app_context():  # as an older version stored it
        db.session.add(ConversionDestination(site_id=site["id"], name="old", kind="meta",
                                             config=meta_config()))
        db.session.commit()
    shown = admin.get("/v1/conversions/destinations").get_json()["destinations"][0]
    assert shown["config"]["access_token"] == "****6789"
    from dni_server.worker import Worker
    Worker(app).conversions.run_once()
    assert SECRET not in raw_configs(database_url)[0]


def test_a_local_database_gets_a_generated_key_file(redis_url, tmp_path):
    from dni_server import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}",
                      "REDIS_URL": redis_url, "DNI_ADMIN_TOKEN": ADMIN_TOKEN,
                      "DNI_WORKER": "false"}, instance_path=str(tmp_path / "instance"))
    try:
        key_file = os.path.join(app.instance_path, "credentials_key")
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        with open(key_file) as fh:
            assert app.extensions["dni"].settings.credentials_keys == (fh.read().strip(),)
    finally:
        with app.app_context():
            db.engine.dispose()
        app.extensions["dni"].redis.close()
        app.extensions["dni"].redis_admin.close()


def test_without_a_key_no_credential_is_stored(app, admin, database_url):
    services = app.extensions["dni"]  # as on PostgreSQL with DNI_CREDENTIALS_KEYS unset
    services.settings = dataclasses.replace(services.settings, credentials_keys=())
    site = make_site(admin)
    response = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "meta", "kind": "meta", "config": meta_config()})
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == "credentials_key_missing"
    assert "DNI_CREDENTIALS_KEYS" in response.get_json()["error"]["message"]
    assert raw_configs(database_url) == []


def test_a_malformed_key_stops_the_app_naming_the_variable():
    from dni_server.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="DNI_CREDENTIALS_KEYS"):
        load_settings({"DNI_CREDENTIALS_KEYS": "not-a-fernet-key"})
    assert load_settings({"DNI_CREDENTIALS_KEYS": f" {new_key()} , {new_key()} "}
                         ).credentials_keys.__len__() == 2
