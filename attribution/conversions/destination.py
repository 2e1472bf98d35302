"""What the four destinations share: config parsing, reasons, outcomes, secrets, OAuth tokens.

A destination is built from a plain mapping (from the environment or the admin API) and is
pure: ``prepare`` builds a request, ``read`` turns the platform's answer into outcomes. The
only I/O is the OAuth token refresh in ``authenticate``, done by ``http.deliver``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal

from attribution.conversions.base import Conversion, Outcome, PreparedRequest
from attribution.conversions.outbound import ForbiddenAddress, checked_url

CURRENCY = re.compile(r"^[A-Z]{3}$")


# -- why a conversion cannot be sent ---------------------------------------------------------


class Reason(str):
    """A ``check`` answer: why this conversion can never be sent (it will be marked failed)."""

    status = "failed"


class Skip(Reason):
    """A ``check`` answer for "nothing to send, by design" (no consent, no click id...)."""

    status = "skipped"


class AuthError(Exception):
    """Getting an access token failed; the batch is retried later."""


# -- config ---------------------------------------------------------------------------------


class Config:
    """Typed reads of a destination's config mapping; every error names the key."""

    def __init__(self, kind: str, mapping: Mapping):
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{kind}: config must be a mapping")
        self.kind = kind
        self.mapping = mapping

    def _raw(self, key: str):
        value = self.mapping.get(key)
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    def text(self, key: str, default: str | None = None, *, required: bool = False,
             pattern: str | None = None, choices: Iterable[str] | None = None) -> str | None:
        value = self._raw(key)
        if value is None:
            if required:
                raise ValueError(f"{self.kind}: missing config key {key!r}")
            return default
        if not isinstance(value, str):
            raise ValueError(f"{self.kind}: config key {key!r} must be a string")
        value = value.strip()
        if pattern and not re.fullmatch(pattern, value):
            raise ValueError(f"{self.kind}: invalid config key {key!r}: {value!r}")
        if choices is not None and value not in choices:
            raise ValueError(f"{self.kind}: invalid config key {key!r}: must be one of {sorted(choices)}")
        return value

    def url(self, key: str, default: str) -> str:
        value = self.text(key, default)
        try:
            return checked_url(value).rstrip("/")
        except ValueError as exc:
            raise ValueError(f"{self.kind}: invalid config key {key!r}: {exc}") from None

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.kind}: invalid config key {key!r}: not an integer") from None
        if isinstance(value, bool) or number < minimum:
            raise ValueError(f"{self.kind}: invalid config key {key!r}: must be >= {minimum}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{self.kind}: invalid config key {key!r}: not a boolean")


# -- helpers for every destination ----------------------------------------------------------


def mask(secret: str) -> str:
    """A secret as it may be shown: its last 4 characters at most, never the whole."""
    return "****" + secret[-4:] if len(secret) >= 12 else "****"


def utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: conversions work in aware UTC times")
    return moment.astimezone(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    """``2026-03-01T18:45:00Z``: whole seconds, so a retry sends the very same time."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def number(value: Decimal) -> float | int:
    """A JSON number for a money value (never a string)."""
    return int(value) if value == value.to_integral_value() else float(value)


def retry_after(headers: Mapping[str, str], now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def transient(status: int) -> bool:
    return status == 408 or status == 429 or status >= 500


def every(convs: Iterable[Conversion], status: str, detail: str = "", **kw) -> list[Outcome]:
    return [Outcome(c.key, status, detail, **kw) for c in convs]


def json_body(body: bytes) -> dict | None:
    try:
        value = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def short(body: bytes, limit: int = 300) -> str:
    return body[:limit].decode("utf-8", "replace")


class Destination:
    """The shape every destination has; subclasses fill in the platform's format."""

    kind = ""
    max_batch = 1
    per_minute = 60
    supports_retraction = False
    all_or_nothing = False  # one bad event fails the whole request: http.deliver bisects on 400

    def __init__(self, config: Mapping):
        self.config = Config(self.kind, config)
        self.per_minute = self.config.integer("per_minute", type(self).per_minute)
        self.timeout = float(self.config.integer("timeout_seconds", 20))
        self._secrets: list[str] = []

    # secrets ------------------------------------------------------------------------
    def secret(self, value: str | None) -> str | None:
        """Remember a credential so that ``redact`` masks it everywhere."""
        if value:
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)
        return value

    def redact(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, mask(value))
        return text

    # batching -----------------------------------------------------------------------
    def batch_key(self, conv: Conversion) -> str:
        """Conversions with different keys never share a request."""
        return ""

    def split(self, convs: Iterable[Conversion]) -> list[list[Conversion]]:
        """Requests' worth of conversions: same ``batch_key``, at most ``max_batch`` each."""
        groups: dict[str, list[Conversion]] = {}
        for conv in convs:
            groups.setdefault(self.batch_key(conv), []).append(conv)
        return [group[i:i + self.max_batch] for group in groups.values()
                for i in range(0, len(group), self.max_batch)]

    # the platform -------------------------------------------------------------------
    def authenticate(self, session, now: dt.datetime, timeout: float) -> None:
        """Make sure credentials are ready (OAuth refresh); raise AuthError when they are not."""

    def check(self, conv: Conversion, now: dt.datetime) -> Reason | None:
        raise NotImplementedError

    def prepare(self, convs: list[Conversion], now: dt.datetime) -> PreparedRequest:
        raise NotImplementedError

    def read(self, status: int, headers: Mapping[str, str], body: bytes,
             convs: list[Conversion]) -> list[Outcome]:
        raise NotImplementedError

    def bisectable(self, status: int, body: bytes) -> bool:
        """Whether a rejected all-or-nothing batch may be split to find the bad events."""
        return status == 400

    def _common_checks(self, conv: Conversion) -> Reason | None:
        if conv.value is not None and not CURRENCY.match(conv.currency or ""):
            return Reason(f"currency must be an ISO 4217 code such as USD, not {conv.currency!r}")
        if conv.value is not None and conv.value < 0:
            return Reason("conversion value must not be negative")
        return None


class OAuthToken:
    """An OAuth 2.0 access token: a static one, or refreshed from a refresh token and cached.

    ``refresh_token`` grant at ``token_url`` (form POST, RFC 6749 section 6); the token is
    reused until 60 s before ``expires_in`` runs out.
    """

    def __init__(self, owner: Destination, config: Config, default_token_url: str,
                 scope: str | None = None):
        self.static = owner.secret(config.text("access_token"))
        self.client_id = config.text("client_id")
        self.client_secret = owner.secret(config.text("client_secret"))
        self.refresh_token = owner.secret(config.text("refresh_token"))
        self.token_url = config.url("token_url", default_token_url)
        self.scope = scope
        self.owner = owner
        if not self.static:
            if not self.client_id:
                raise ValueError(f"{config.kind}: missing config key 'access_token' "
                                 "(or 'client_id' with 'refresh_token')")
            if not self.refresh_token:
                raise ValueError(f"{config.kind}: missing config key 'refresh_token'")
        self.current: str | None = self.static
        self.expires_at: dt.datetime | None = None

    def valid(self, now: dt.datetime) -> bool:
        if self.static:
            return True
        return bool(self.current and self.expires_at and now < self.expires_at)

    def ensure(self, session, now: dt.datetime, timeout: float) -> str:
        if self.valid(now):
            return self.current
        form = {"grant_type": "refresh_token", "client_id": self.client_id,
                "refresh_token": self.refresh_token}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        if self.scope:
            form["scope"] = self.scope
        try:
            # No redirects: a redirect would carry the refresh token somewhere unchecked.
            response = session.post(self.token_url, data=form, timeout=timeout,
                                    allow_redirects=False)
        except ForbiddenAddress as exc:
            raise AuthError(f"token refresh refused: {exc}") from exc
        except Exception as exc:  # requests' network errors, timeouts
            raise AuthError(f"token refresh failed: {type(exc).__name__}") from exc
        data = json_body(response.content) or {}
        token = data.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = data.get("error_description") or data.get("error") or short(response.content, 120)
            error = self.owner.redact(str(error))
            raise AuthError(f"token refresh failed: HTTP {response.status_code}: {error}")
        if self.current and self.current in self.owner._secrets:
            self.owner._secrets.remove(self.current)  # keep the list from growing with each refresh
        self.current = self.owner.secret(token)
        lifetime = data.get("expires_in", 3600)
        lifetime = lifetime if isinstance(lifetime, int | float) else 3600
        self.expires_at = now + dt.timedelta(seconds=max(0, lifetime - 60))
        return token
