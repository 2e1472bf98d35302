"""Issue 11, F4 F13 F14 F16 F18 (banner): dashboard logins that end, a back-off on wrong
tokens, Secure cookies behind https, a closed /metrics, and a banner that keeps a set token
to itself. Against the suite's real Redis and SQL."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import types

import pytest

import dni_server
import dni_server.embedded
from dni_server.config import ConfigError, load_settings
from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "test-secret-key-0123456789"  # conftest's
OTHER_ADMIN_TOKEN = "another-admin-token-0123456789abcdef"
METRICS_TOKEN = "metrics-token-0123456789"
COOKIE = "session"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the form"
    return found.group(1)


def try_login(client, token: str, ip: str = "127.0.0.1"):
    page = client.get("/dashboard/login", environ_base={"REMOTE_ADDR": ip})
    return client.post("/dashboard/login", data={"token": token, "csrf_token": csrf_of(page.text)},
                       environ_base={"REMOTE_ADDR": ip})


def log_in(client, token: str = ADMIN_TOKEN):
    response = try_login(client, token)
    assert response.status_code == 302, response.text
    return client


def with_cookie(app, value: str):
    """A fresh browser holding a copy of someone's dashboard cookie."""
    client = app.test_client()
    client.set_cookie(COOKIE, value)
    return client


def signed_in(client) -> bool:
    response = client.get("/dashboard/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


# -- F4: a dashboard login is bound to its token, bounded, and ends on logout ----------------


def test_logout_ends_a_copied_cookie_too(app):
    browser = log_in(app.test_client())
    copied = browser.get_cookie(COOKIE).value
    assert signed_in(with_cookie(app, copied))
    page = browser.get("/dashboard/")
    assert browser.post("/dashboard/logout",
                        data={"csrf_token": csrf_of(page.text)}).status_code == 302
    assert not signed_in(browser)
    assert not signed_in(with_cookie(app, copied))


def test_a_new_admin_token_ends_the_old_ones_logins(make_app):
    before = make_app()
    admin_cookie = log_in(before.test_client()).get_cookie(COOKIE).value
    token = AdminClient(before.test_client(), ADMIN_TOKEN).post(
        "/v1/tokens", json={"name": "ops", "scope": "read_only"}).json["token"]
    api_token_cookie = log_in(before.test_client(), token).get_cookie(COOKIE).value

    same = make_app()  # a restart with the same settings keeps both logins
    assert signed_in(with_cookie(same, admin_cookie))
    rotated = make_app(DNI_ADMIN_TOKEN=OTHER_ADMIN_TOKEN)  # same secret key, new admin token
    assert not signed_in(with_cookie(rotated, admin_cookie))
    assert signed_in(with_cookie(rotated, api_token_cookie))  # its own token still stands
    assert not signed_in(with_cookie(same, admin_cookie))  # the ended login stays ended


def test_a_login_lives_at_most_the_configured_hours(make_app, redis_client):
    app = make_app(DNI_DASHBOARD_SESSION_HOURS="2")
    log_in(app.test_client())
    [key] = redis_client.keys("*dashboard-login*")
    assert 0 < redis_client.ttl(key) <= 2 * 3600
    redis_client.delete(key)  # what the expiry does
    # The cookie itself holds nothing that signs anyone in without the record.
    browser = log_in(app.test_client())
    redis_client.delete(*redis_client.keys("*dashboard-login*"))
    assert not signed_in(browser)


def test_session_ids_and_dashboard_cookies_are_signed_with_separate_derived_keys(app):
    from dni_server.tokens import derive_key

    visitor_key = app.extensions["dni"].sessions.ids.secret
    cookie_key = app.secret_key
    assert visitor_key == derive_key(SECRET_KEY, "visitor session ids")
    assert cookie_key == derive_key(SECRET_KEY, "dashboard cookies")
    assert len({visitor_key, cookie_key, SECRET_KEY.encode()}) == 3
    # A cookie signed with the visitor key (or the bare secret) opens nothing.
    browser = log_in(app.test_client())
    app.secret_key = visitor_key
    assert not signed_in(browser)


def test_rotating_the_dashboard_secret_ends_logins_and_no_visitor_session(make_app):
    before = make_app(DNI_DASHBOARD_SECRET="dashboard-secret-one-0123")
    visitor_ids = before.extensions["dni"].sessions.ids
    session_id = visitor_ids.new([7])
    browser = log_in(before.test_client())
    assert signed_in(browser)

    same = make_app(DNI_DASHBOARD_SECRET="dashboard-secret-one-0123")
    assert signed_in(with_cookie(same, browser.get_cookie("session").value))  # control
    after = make_app(DNI_DASHBOARD_SECRET="dashboard-secret-two-4567")
    # Every dashboard login is over.
    assert not signed_in(with_cookie(after, browser.get_cookie("session").value))
    # Visitor session ids are signed with DNI_SECRET_KEY's key, unchanged: still valid.
    assert after.extensions["dni"].sessions.ids.pools(session_id) == [7]


def test_without_redis_the_dashboard_answers_503_rather_than_let_anyone_in(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = try_login(app.test_client(), ADMIN_TOKEN)
    assert response.status_code == 503
    assert "Set-Cookie" not in response.headers or "session=;" in response.headers["Set-Cookie"]


# -- F13: a back-off on wrong tokens, shared by every worker --------------------------------


def test_wrong_bearer_tokens_back_off_before_the_token_is_checked(make_app):
    first, second = make_app(DNI_AUTH_FAILURE_LIMIT="3/600"), make_app(
        DNI_AUTH_FAILURE_LIMIT="3/600")  # two workers, one Redis
    guesser = first.test_client()
    for guess in range(3):
        wrong = guesser.get("/v1/sites", headers={"Authorization": f"Bearer guess-{guess}"})
        assert wrong.status_code == 401
    right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for app in (first, second):
        refused = app.test_client().get("/v1/sites", headers=right)
        assert refused.status_code == 429
        assert refused.json["error"]["code"] == "rate_limited"
        assert 0 < int(refused.headers["Retry-After"]) <= 600
    elsewhere = first.test_client().get("/v1/sites", headers=right,
                                        environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert elsewhere.status_code == 200


def test_requests_without_a_token_are_not_counted_as_guesses(make_app):
    app = make_app(DNI_AUTH_FAILURE_LIMIT="2/600")
    client = app.test_client()
    for _ in range(5):
        assert client.get("/v1/sites").status_code == 401
    assert client.get("/v1/sites", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                      ).status_code == 200


def test_wrong_dashboard_logins_back_off_and_are_logged_without_the_token(make_app, caplog):
    app = make_app(DNI_AUTH_FAILURE_LIMIT="3/600")
    guesses = [f"guess-number-{n}-abcdefghijklmnop" for n in range(3)]
    with caplog.at_level(logging.WARNING):
        for guess in guesses:
            assert try_login(app.test_client(), guess, ip="198.51.100.7").status_code == 401
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("198.51.100.7" in line for line in warnings) == 3
    assert not any(guess in line for line in warnings for guess in guesses)
    refused = try_login(app.test_client(), ADMIN_TOKEN, ip="198.51.100.7")
    assert refused.status_code == 429 and "Too many wrong tokens" in refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert "Set-Cookie" not in refused.headers or "session=;" in refused.headers["Set-Cookie"]
    assert try_login(app.test_client(), ADMIN_TOKEN, ip="198.51.100.8").status_code == 302


def test_ipv6_is_counted_per_64_and_ipv4_mapped_as_ipv4(make_app):
    from dni_server.guesses import client_key

    app = make_app(DNI_AUTH_FAILURE_LIMIT="2/600")
    client = app.test_client()
    for ip in ("2001:db8:1:2::10", "2001:db8:1:2:ffff::99"):  # one /64
        client.get("/v1/sites", headers={"Authorization": "Bearer nope"},
                   environ_base={"REMOTE_ADDR": ip})
    for ip in ("192.0.2.9", "::ffff:192.0.2.9"):
        client.get("/v1/sites", headers={"Authorization": "Bearer nope"},
                   environ_base={"REMOTE_ADDR": ip})
    right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for ip, status in (("2001:db8:1:2::1", 429), ("2001:db8:1:3::1", 200),
                       ("192.0.2.9", 429), ("192.0.2.10", 200)):
        answer = client.get("/v1/sites", headers=right, environ_base={"REMOTE_ADDR": ip})
        assert answer.status_code == status, ip
    assert client_key("::ffff:203.0.113.5") == "203.0.113.5"
    assert client_key("2001:db8::1") == "2001:db8::"
    assert client_key("not an address") == "-"


def test_an_operator_admin_token_needs_32_characters():
    with pytest.raises(ConfigError, match="DNI_ADMIN_TOKEN must be at least 32"):
        load_settings({"DNI_ADMIN_TOKEN": "a" * 31})
    assert load_settings({"DNI_ADMIN_TOKEN": "a" * 32}).admin_token == "a" * 32
    assert load_settings({}).auth_failures == (20, 600)  # the back-off is on by default
    with pytest.raises(ConfigError, match="DNI_AUTH_FAILURE_LIMIT"):
        load_settings({"DNI_AUTH_FAILURE_LIMIT": "lots"})
    with pytest.raises(ConfigError, match="DNI_DASHBOARD_SESSION_HOURS"):
        load_settings({"DNI_DASHBOARD_SESSION_HOURS": "0"})


# -- F14: Secure whenever the public URL or the trusted scheme is https ----------------------


def cookie_header(app, **request) -> str:
    response = app.test_client().get("/dashboard/login", **request)
    return response.headers["Set-Cookie"]


def test_the_cookie_is_secure_behind_https(make_app):
    assert "Secure" in cookie_header(make_app(DNI_PUBLIC_URL="https://dni.example.com"))
    proxied = make_app(DNI_PROXY_HOPS="1")
    assert "Secure" in cookie_header(proxied, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in cookie_header(proxied)
    assert "Secure" in cookie_header(proxied, base_url="https://localhost")
    # Without a trusted proxy, anyone can send the header: it is not believed.
    plain = make_app()
    assert "Secure" not in cookie_header(plain, headers={"X-Forwarded-Proto": "https"})


# -- F16: /metrics needs a token unless made public; no site keys ---------------------------


def test_metrics_need_a_token_unless_made_public(make_app):
    closed = make_app().test_client().get("/metrics")
    assert closed.status_code == 403 and "DNI_METRICS_TOKEN" in closed.json["error"]["message"]
    tokened = make_app(DNI_METRICS_TOKEN=METRICS_TOKEN).test_client()
    assert tokened.get("/metrics").status_code == 401
    assert tokened.get("/metrics", headers={
        "Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
    assert make_app(DNI_METRICS_PUBLIC="true").test_client().get("/metrics").status_code == 200
    with pytest.raises(ConfigError, match="not both"):
        load_settings({"DNI_METRICS_TOKEN": METRICS_TOKEN, "DNI_METRICS_PUBLIC": "true"})


def test_wrong_metrics_tokens_count_towards_the_back_off(make_app):
    client = make_app(DNI_METRICS_TOKEN=METRICS_TOKEN, DNI_AUTH_FAILURE_LIMIT="2/600"
                      ).test_client()
    for _ in range(2):
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}
                          ).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
                      ).status_code == 429


def test_metrics_label_pools_by_site_id_never_site_key(make_app):
    app = make_app(DNI_METRICS_PUBLIC="true")
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    pool = make_pool(admin, site)
    body = app.test_client().get("/metrics").get_data(as_text=True)
    assert site["key"] not in body
    assert f'dni_pool_numbers{{pool_id="{pool["id"]}",site_id="{site["id"]}"}} 3.0' in body


# -- F18: the start banner shows only a generated admin token -------------------------------


def start_banner(monkeypatch, capsys, tmp_path, admin_token: str | None) -> str:
    """What gunicorn.conf.py's on_starting prints, with the app it would build stubbed."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("DNI_LOG_FORMAT", "text")
    monkeypatch.setenv("REDIS_URL", "")  # the embedded default: the banner's case
    monkeypatch.setenv("DNI_WORKER", "false")
    monkeypatch.setenv("DNI_INSTANCE_PATH", str(tmp_path))
    if admin_token:
        monkeypatch.setenv("DNI_ADMIN_TOKEN", admin_token)
    else:
        monkeypatch.delenv("DNI_ADMIN_TOKEN", raising=False)
    spec = importlib.util.spec_from_file_location("gunicorn_settings",
                                                  os.path.join(ROOT, "gunicorn.conf.py"))
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    settings = types.SimpleNamespace(admin_token=admin_token or "generated-token-abc123")
    stub = types.SimpleNamespace(instance_path=str(tmp_path),
                                 extensions={"dni": types.SimpleNamespace(settings=settings)})
    monkeypatch.setattr(dni_server, "create_app", lambda config: stub)
    monkeypatch.setattr(dni_server.embedded, "embedded_redis_url", lambda path: "redis://x")
    capsys.readouterr()
    conf.on_starting(server=None)
    return capsys.readouterr().err


def test_the_banner_never_prints_an_admin_token_from_the_environment(
        monkeypatch, capsys, tmp_path):
    banner = start_banner(monkeypatch, capsys, tmp_path, ADMIN_TOKEN)
    assert "admin token:" in banner and ADMIN_TOKEN not in banner
    assert "DNI_ADMIN_TOKEN" in banner


def test_the_banner_prints_a_generated_admin_token(monkeypatch, capsys, tmp_path):
    assert "admin token: generated-token-abc123" in start_banner(
        monkeypatch, capsys, tmp_path, None)
