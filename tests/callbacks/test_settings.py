"""Callback settings are read with every other setting (dni_server.config): checked at
boot, and handed to the callbacks package as plain values."""

from __future__ import annotations

import pytest

from dni_server.api.callbacks import callback_settings
from dni_server.config import ConfigError, load_settings


def test_the_settings_reach_the_callbacks_as_plain_values():
    own = callback_settings(load_settings({
        "DNI_CALLBACK_CARRIER": "telnyx", "DNI_CALLBACK_RETRY_SECONDS": "120",
        "DNI_CALLBACK_MAX_ATTEMPTS": "5", "DNI_CALLBACK_BUSINESS_TIMEOUT": "30",
        "DNI_CALLBACK_VISITOR_TIMEOUT": "20", "DNI_CALLBACK_CLAIM_SECONDS": "300",
        "DNI_CALLBACK_SITE_IN_PROGRESS": "0", "DNI_TELNYX_CONNECTION_ID": "conn-1",
        "DNI_TWILIO_API_URL": "http://127.0.0.1:9/"}))
    assert (own.carrier, own.retry_seconds, own.max_attempts, own.business_timeout,
            own.visitor_timeout, own.claim_seconds, own.site_in_progress) == (
        "telnyx", 120, 5, 30, 20, 300, 0)
    assert own.telnyx_connection_id == "conn-1" and own.twilio_api_url == "http://127.0.0.1:9"
    assert own.limits().site_in_progress == 0
    defaults = callback_settings(load_settings({}))
    assert (defaults.carrier, defaults.retry_seconds, defaults.max_attempts) == (None, 600, 3)


@pytest.mark.parametrize(("name", "value"), [
    ("DNI_CALLBACK_CARRIER", "vonage"), ("DNI_CALLBACK_MAX_ATTEMPTS", "0"),
    ("DNI_CALLBACK_RETRY_SECONDS", "five"), ("DNI_CALLBACK_VISITOR_TIMEOUT", "600")])
def test_a_bad_setting_stops_the_app_naming_it(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_the_package_reads_no_environment():
    from pathlib import Path

    import attribution.callbacks as package

    for source in Path(package.__file__).parent.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "os.environ" not in text and "getenv" not in text, source.name
