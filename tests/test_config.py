"""Settings are parsed strictly: a bad value stops the app and names the variable."""

from __future__ import annotations

import pytest

from dni_server import create_app
from dni_server.config import ConfigError, load_settings


@pytest.mark.parametrize("name, value", [
    ("DNI_DEMO", "maybe"),
    ("DNI_WORKER", "sometimes"),
    ("DNI_REDIS_TIMEOUT_MS", "fast"),
    ("DNI_REDIS_TIMEOUT_MS", "1"),
    ("DNI_SESSION_RATE", "10 per minute"),
    ("DNI_SESSION_RATE", "10/0"),
    ("DNI_MAX_BODY_BYTES", "-5"),
    ("DNI_PROXY_HOPS", "99"),
    ("DATABASE_URL", "mysql://db/x"),
    ("REDIS_URL", "http://localhost:6379"),
    ("DNI_ADMIN_TOKEN", "short"),
    ("DNI_SECRET_KEY", "short"),
    ("DNI_PUBLIC_URL", "dni.example.com"),
    ("DNI_GEOIP_DB", "/no/such/file.mmdb"),
    ("DNI_REDIS_PREFIX", "has space"),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_the_app_refuses_to_start_on_a_bad_value(tmp_path):
    with pytest.raises(ConfigError, match="DNI_DEMO"):
        create_app({"DNI_DEMO": "maybe"}, instance_path=str(tmp_path))


def test_good_values_are_parsed():
    settings = load_settings({
        "DNI_DEMO": "yes", "DNI_SESSION_RATE": "20/60", "DNI_REDIS_TIMEOUT_MS": "80",
        "DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/2",
        "DNI_PUBLIC_URL": "https://dni.example.com/", "DNI_SESSION_RATE_UNUSED": "x",
    })
    assert settings.demo is True
    assert settings.session_rate == (20, 60)
    assert settings.redis_timeout_ms == 80
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.public_url == "https://dni.example.com"
    assert load_settings({"DNI_SESSION_RATE": "0"}).session_rate[0] == 0
    assert load_settings({}).embedded_redis and load_settings({}).embedded_database
