"""Settings read once from the environment (or a mapping in tests), parsed strictly.

A bad value stops the app at boot with a message naming the variable, rather than
silently becoming a default and misbehaving later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of true/false/1/0/yes/no/on/off, got {raw!r}")


def parse_int(name: str, raw: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def parse_rate(name: str, raw: str) -> tuple[int, int]:
    """Parse ``COUNT/SECONDS`` (``20/60``); ``0`` turns the limit off."""
    text = raw.strip()
    if text == "0":
        return (0, 60)
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+)", text)
    if not match or int(match.group(2)) == 0:
        raise ConfigError(f"{name} must look like COUNT/SECONDS (e.g. 20/60) or 0, got {raw!r}")
    return int(match.group(1)), int(match.group(2))


def parse_shares(name: str, raw: str) -> tuple[float, float]:
    """Parse ``IP_SHARE,SUBNET_SHARE`` (``0.2,0.4``), fractions of a pool; ``0`` = no caps."""
    text = raw.strip()
    if text == "0":
        return (0.0, 0.0)
    match = re.fullmatch(r"(\d*\.?\d+)\s*,\s*(\d*\.?\d+)", text)
    if not match or not all(0 < float(x) <= 1 for x in match.groups()):
        raise ConfigError(f"{name} must look like IP_SHARE,SUBNET_SHARE with each in (0, 1] "
                          f"(e.g. 0.2,0.4) or 0, got {raw!r}")
    return float(match.group(1)), float(match.group(2))


def parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    text = raw.strip()
    if not any(text.startswith(scheme) for scheme in schemes):
        raise ConfigError(f"{name} must start with one of {', '.join(schemes)}, got {raw!r}")
    return text


@dataclass(frozen=True)
class Settings:
    """Every setting the service reads; see the README for what each one does."""

    database_url: str | None = None
    redis_url: str | None = None
    admin_token: str | None = None
    secret_key: str | None = None
    dashboard_secret: str | None = None  # rotated on its own: ends dashboard logins only
    public_url: str | None = None
    demo: bool = False
    geoip_db: str | None = None
    twilio_auth_token: str | None = None
    telnyx_public_key: str | None = None
    telnyx_api_key: str | None = None
    telnyx_api_url: str = "https://api.telnyx.com/v2"
    twilio_api_url: str = "https://api.twilio.com"  # buying numbers (attribution.numbers)
    carrier_queue: int = 200  # carrier commands waiting or being sent; more are dropped
    redis_prefix: str = "dni"
    redis_timeout_ms: int = 50
    session_rate: tuple[int, int] = (30, 60)
    pool_share: tuple[float, float] = (0.2, 0.4)
    max_body_bytes: int = 16_384
    proxy_hops: int = 0
    worker: bool | None = None
    site_cache_seconds: int = 5
    conversions_config: dict | None = None  # parsed DNI_CONVERSIONS_CONFIG file
    conversions_settle_seconds: int = 60
    conversions_retry_seconds: int = 30
    conversions_max_attempts: int = 8
    conversions_lease_seconds: int = 300
    # Hosts conversions may reach on internal addresses (local test receivers only).
    outbound_allow_hosts: tuple[str, ...] = ()
    # Fernet keys for destination credentials at rest: the first encrypts, all decrypt.
    credentials_keys: tuple[str, ...] = ()
    log_format: str = "text"  # gunicorn.conf.py makes "json" the default under gunicorn
    log_level: str = "INFO"
    metrics_token: str | None = None
    metrics_public: bool = False  # /metrics without a token, only when asked for
    dashboard_session_hours: int = 12
    auth_failures: tuple[int, int] = (20, 600)  # wrong tokens per client, per window
    # Reports (issue 11, F7): SQL time per statement, rows per page, days x dimensions,
    # and report runs per token (JSON, CSV and the dashboard's report page alike).
    report_timeout_ms: int = 5000
    report_max_rows: int = 1000
    report_max_day_dimensions: int = 3660
    report_rate: tuple[int, int] = (30, 60)
    # Call insight (issue 17): where recordings are kept (default <instance>/recordings),
    # the Twilio account their links need (else read from the link), the speech engine.
    recordings_dir: str | None = None
    twilio_account_sid: str | None = None
    transcriber: str | None = None  # module:factory (attribution/insight/transcriber.py)
    transcriber_model_dir: str | None = None
    insight_max_attempts: int = 8
    insight_retry_seconds: int = 60
    # Web callbacks (issue 18): the carrier that places them (default: whichever has
    # credentials), the retry pace, how long each leg rings, when a silent attempt is
    # ended, the per-site cap on callbacks in progress (0: none), Telnyx's connection.
    callback_carrier: str | None = None
    callback_retry_seconds: int = 600
    callback_max_attempts: int = 3
    callback_business_timeout: int = 25
    callback_visitor_timeout: int = 25
    callback_claim_seconds: int = 900
    callback_site_in_progress: int = 50
    telnyx_connection_id: str | None = None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``env`` (default ``os.environ``), raising ConfigError on junk."""
    env = os.environ if env is None else env
    values: dict = {}

    def get(name: str) -> str | None:
        raw = env.get(name)
        return None if raw is None or raw.strip() == "" else raw

    if (raw := get("DATABASE_URL")) is not None:
        values["database_url"] = parse_url(
            "DATABASE_URL", raw, ("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")
        ).replace("postgres://", "postgresql+psycopg://", 1).replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
    if (raw := get("REDIS_URL")) is not None:
        values["redis_url"] = parse_url(
            "REDIS_URL", raw, ("redis://", "rediss://", "unix://", "redis+cluster://")
        )
    if (raw := get("DNI_ADMIN_TOKEN")) is not None:
        if len(raw.strip()) < 32:  # long enough that guessing it is hopeless
            raise ConfigError("DNI_ADMIN_TOKEN must be at least 32 characters")
        values["admin_token"] = raw.strip()
    if (raw := get("DNI_SECRET_KEY")) is not None:
        if len(raw.strip()) < 16:
            raise ConfigError("DNI_SECRET_KEY must be at least 16 characters")
        values["secret_key"] = raw.strip()
    if (raw := get("DNI_DASHBOARD_SECRET")) is not None:
        if len(raw.strip()) < 16:
            raise ConfigError("DNI_DASHBOARD_SECRET must be at least 16 characters")
        values["dashboard_secret"] = raw.strip()
    if (raw := get("DNI_PUBLIC_URL")) is not None:
        values["public_url"] = parse_url("DNI_PUBLIC_URL", raw, ("http://", "https://")).rstrip("/")
    if (raw := env.get("DNI_DEMO")) is not None:
        values["demo"] = parse_bool("DNI_DEMO", raw)
    if (raw := get("DNI_GEOIP_DB")) is not None:
        if not os.path.isfile(raw):
            raise ConfigError(f"DNI_GEOIP_DB names no readable file: {raw!r}")
        values["geoip_db"] = raw
    for name, key in (("DNI_TWILIO_AUTH_TOKEN", "twilio_auth_token"),
                      ("DNI_TELNYX_PUBLIC_KEY", "telnyx_public_key"),
                      ("DNI_TELNYX_API_KEY", "telnyx_api_key")):
        if (raw := get(name)) is not None:
            values[key] = raw.strip()
    if (raw := get("DNI_TELNYX_API_URL")) is not None:
        values["telnyx_api_url"] = parse_url("DNI_TELNYX_API_URL", raw,
                                             ("http://", "https://")).rstrip("/")
    if (raw := get("DNI_TWILIO_API_URL")) is not None:
        values["twilio_api_url"] = parse_url("DNI_TWILIO_API_URL", raw,
                                             ("http://", "https://")).rstrip("/")
    if (raw := get("DNI_CARRIER_QUEUE")) is not None:
        values["carrier_queue"] = parse_int("DNI_CARRIER_QUEUE", raw, minimum=1, maximum=100_000)
    if (raw := get("DNI_REDIS_PREFIX")) is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", raw):
            raise ConfigError(f"DNI_REDIS_PREFIX must be 1-32 of A-Z a-z 0-9 _ . -, got {raw!r}")
        values["redis_prefix"] = raw
    if (raw := get("DNI_REDIS_TIMEOUT_MS")) is not None:
        values["redis_timeout_ms"] = parse_int("DNI_REDIS_TIMEOUT_MS", raw, minimum=5, maximum=10_000)
    if (raw := get("DNI_SESSION_RATE")) is not None:
        values["session_rate"] = parse_rate("DNI_SESSION_RATE", raw)
    if (raw := get("DNI_POOL_SHARE")) is not None:
        values["pool_share"] = parse_shares("DNI_POOL_SHARE", raw)
    if (raw := get("DNI_MAX_BODY_BYTES")) is not None:
        values["max_body_bytes"] = parse_int("DNI_MAX_BODY_BYTES", raw, minimum=1024, maximum=10_485_760)
    if (raw := get("DNI_PROXY_HOPS")) is not None:
        values["proxy_hops"] = parse_int("DNI_PROXY_HOPS", raw, minimum=0, maximum=10)
    if (raw := env.get("DNI_WORKER")) is not None:
        values["worker"] = parse_bool("DNI_WORKER", raw)
    if (raw := get("DNI_SITE_CACHE_SECONDS")) is not None:
        values["site_cache_seconds"] = parse_int("DNI_SITE_CACHE_SECONDS", raw, minimum=0, maximum=3600)
    if (raw := get("DNI_LOG_FORMAT")) is not None:
        if raw.strip().lower() not in ("json", "text"):
            raise ConfigError(f"DNI_LOG_FORMAT must be json or text, got {raw!r}")
        values["log_format"] = raw.strip().lower()
    if (raw := get("DNI_LOG_LEVEL")) is not None:
        if raw.strip().upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(
                f"DNI_LOG_LEVEL must be debug, info, warning, error or critical, got {raw!r}")
        values["log_level"] = raw.strip().upper()
    if (raw := get("DNI_METRICS_TOKEN")) is not None:
        if len(raw.strip()) < 16:
            raise ConfigError("DNI_METRICS_TOKEN must be at least 16 characters")
        values["metrics_token"] = raw.strip()
    values.update(_auth_settings(env, get, values))
    values.update(_report_settings(get))
    values.update(_conversion_settings(get))
    values.update(_insight_settings(get))
    values.update(_callback_settings(get))
    return Settings(**values)


def _auth_settings(env, get, values: dict) -> dict:
    """Dashboard login lifetime, the back-off on wrong tokens, and who may read /metrics."""
    found: dict = {}
    if (raw := env.get("DNI_METRICS_PUBLIC")) is not None:
        found["metrics_public"] = parse_bool("DNI_METRICS_PUBLIC", raw)
        if found["metrics_public"] and values.get("metrics_token"):
            raise ConfigError("set DNI_METRICS_TOKEN or DNI_METRICS_PUBLIC=true, not both")
    if (raw := get("DNI_DASHBOARD_SESSION_HOURS")) is not None:
        found["dashboard_session_hours"] = parse_int("DNI_DASHBOARD_SESSION_HOURS", raw,
                                                     minimum=1, maximum=720)
    if (raw := get("DNI_AUTH_FAILURE_LIMIT")) is not None:
        found["auth_failures"] = parse_rate("DNI_AUTH_FAILURE_LIMIT", raw)
    return found


def _report_settings(get) -> dict:
    """What one report may cost, and how often a token may ask for one."""
    values: dict = {}
    for name, key, low, high in (
            ("DNI_REPORT_TIMEOUT_MS", "report_timeout_ms", 1, 600_000),
            ("DNI_REPORT_MAX_ROWS", "report_max_rows", 1, 100_000),
            ("DNI_REPORT_MAX_DAY_DIMENSIONS", "report_max_day_dimensions", 1, 1_000_000)):
        if (raw := get(name)) is not None:
            values[key] = parse_int(name, raw, minimum=low, maximum=high)
    if (raw := get("DNI_REPORT_RATE")) is not None:
        values["report_rate"] = parse_rate("DNI_REPORT_RATE", raw)
    return values


def _conversion_settings(get) -> dict:
    """Offline conversions: the destinations file and the outbox's pace."""
    values: dict = {}
    if (raw := get("DNI_CONVERSIONS_CONFIG")) is not None:
        import json

        from attribution.conversions.admin import parse_file

        try:
            with open(raw, encoding="utf-8") as handle:
                values["conversions_config"] = parse_file(json.load(handle))
        except OSError as exc:
            raise ConfigError(f"DNI_CONVERSIONS_CONFIG: cannot read {raw!r}: {exc.strerror}") \
                from None
        except ValueError as exc:  # bad JSON, or a bad destination or rule
            raise ConfigError(f"DNI_CONVERSIONS_CONFIG ({raw}): {exc}") from None
    for name, key, low, high in (
            ("DNI_CONVERSIONS_SETTLE_SECONDS", "conversions_settle_seconds", 0, 86_400),
            ("DNI_CONVERSIONS_RETRY_SECONDS", "conversions_retry_seconds", 1, 86_400),
            ("DNI_CONVERSIONS_MAX_ATTEMPTS", "conversions_max_attempts", 1, 100),
            ("DNI_CONVERSIONS_LEASE_SECONDS", "conversions_lease_seconds", 5, 86_400)):
        if (raw := get(name)) is not None:
            values[key] = parse_int(name, raw, minimum=low, maximum=high)
    if (raw := get("DNI_OUTBOUND_ALLOW_HOSTS")) is not None:
        values["outbound_allow_hosts"] = tuple(h.strip() for h in raw.split(",") if h.strip())
    if (raw := get("DNI_CREDENTIALS_KEYS")) is not None:
        from attribution.conversions.credentials import check_key

        keys = [k.strip() for k in raw.split(",") if k.strip()]
        for i, key in enumerate(keys):
            try:
                check_key(key)
            except ValueError as exc:
                raise ConfigError(f"DNI_CREDENTIALS_KEYS: key {i + 1}: {exc}") from None
        values["credentials_keys"] = tuple(keys)
    return values


def _insight_settings(get) -> dict:
    """Recordings and their analysis: where they are kept, the engine, the retry pace."""
    values: dict = {}
    for name, key in (("DNI_RECORDINGS_DIR", "recordings_dir"),
                      ("DNI_TWILIO_ACCOUNT_SID", "twilio_account_sid"),
                      ("DNI_TRANSCRIBER", "transcriber"),
                      ("DNI_TRANSCRIBER_MODEL_DIR", "transcriber_model_dir")):
        if (raw := get(name)) is not None:
            values[key] = raw.strip()
    if "transcriber" in values and ":" not in values["transcriber"]:
        raise ConfigError(f"DNI_TRANSCRIBER must look like module:factory, got {values['transcriber']!r}")
    for name, key, low, high in (("DNI_INSIGHT_MAX_ATTEMPTS", "insight_max_attempts", 1, 100),
                                 ("DNI_INSIGHT_RETRY_SECONDS", "insight_retry_seconds", 1, 86_400)):
        if (raw := get(name)) is not None:
            values[key] = parse_int(name, raw, minimum=low, maximum=high)
    return values


def _callback_settings(get) -> dict:
    """Web callbacks: the carrier, attempts and their pace, ring times, the site cap."""
    values: dict = {}
    if (raw := get("DNI_CALLBACK_CARRIER")) is not None:
        if raw.strip() not in ("twilio", "telnyx"):
            raise ConfigError(f"DNI_CALLBACK_CARRIER must be twilio or telnyx, got {raw!r}")
        values["callback_carrier"] = raw.strip()
    for name, key, low, high in (
            ("DNI_CALLBACK_RETRY_SECONDS", "callback_retry_seconds", 10, 86_400),
            ("DNI_CALLBACK_MAX_ATTEMPTS", "callback_max_attempts", 1, 20),
            ("DNI_CALLBACK_BUSINESS_TIMEOUT", "callback_business_timeout", 5, 120),
            ("DNI_CALLBACK_VISITOR_TIMEOUT", "callback_visitor_timeout", 5, 120),
            ("DNI_CALLBACK_CLAIM_SECONDS", "callback_claim_seconds", 60, 86_400),
            ("DNI_CALLBACK_SITE_IN_PROGRESS", "callback_site_in_progress", 0, 1_000_000)):
        if (raw := get(name)) is not None:
            values[key] = parse_int(name, raw, minimum=low, maximum=high)
    if (raw := get("DNI_TELNYX_CONNECTION_ID")) is not None:
        values["telnyx_connection_id"] = raw.strip()
    return values
