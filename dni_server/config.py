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
    public_url: str | None = None
    demo: bool = False
    geoip_db: str | None = None
    twilio_auth_token: str | None = None
    telnyx_public_key: str | None = None
    telnyx_api_key: str | None = None
    telnyx_api_url: str = "https://api.telnyx.com/v2"
    redis_prefix: str = "dni"
    redis_timeout_ms: int = 50
    session_rate: tuple[int, int] = (30, 60)
    max_body_bytes: int = 16_384
    proxy_hops: int = 0
    worker: bool | None = None
    site_cache_seconds: int = 5

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
        if len(raw.strip()) < 16:
            raise ConfigError("DNI_ADMIN_TOKEN must be at least 16 characters")
        values["admin_token"] = raw.strip()
    if (raw := get("DNI_SECRET_KEY")) is not None:
        if len(raw.strip()) < 16:
            raise ConfigError("DNI_SECRET_KEY must be at least 16 characters")
        values["secret_key"] = raw.strip()
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
    if (raw := get("DNI_REDIS_PREFIX")) is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", raw):
            raise ConfigError(f"DNI_REDIS_PREFIX must be 1-32 of A-Z a-z 0-9 _ . -, got {raw!r}")
        values["redis_prefix"] = raw
    if (raw := get("DNI_REDIS_TIMEOUT_MS")) is not None:
        values["redis_timeout_ms"] = parse_int("DNI_REDIS_TIMEOUT_MS", raw, minimum=5, maximum=10_000)
    if (raw := get("DNI_SESSION_RATE")) is not None:
        values["session_rate"] = parse_rate("DNI_SESSION_RATE", raw)
    if (raw := get("DNI_MAX_BODY_BYTES")) is not None:
        values["max_body_bytes"] = parse_int("DNI_MAX_BODY_BYTES", raw, minimum=1024, maximum=10_485_760)
    if (raw := get("DNI_PROXY_HOPS")) is not None:
        values["proxy_hops"] = parse_int("DNI_PROXY_HOPS", raw, minimum=0, maximum=10)
    if (raw := env.get("DNI_WORKER")) is not None:
        values["worker"] = parse_bool("DNI_WORKER", raw)
    if (raw := get("DNI_SITE_CACHE_SECONDS")) is not None:
        values["site_cache_seconds"] = parse_int("DNI_SITE_CACHE_SECONDS", raw, minimum=0, maximum=3600)
    return Settings(**values)
