"""Destination credentials encrypted at rest, with keys kept outside the database.

A destination's config is one JSON document; its credential fields (``access_token``,
``client_secret``, ``refresh_token``, ``api_secret``, ``developer_token``: any key naming a
token, secret, password, key or credential that is not a URL) are stored as
``fernet:<token>``, encrypted with ``cryptography``'s Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ``DNI_CREDENTIALS_KEYS`` (comma-separated Fernet keys): the first encrypts,
every one is tried to decrypt, so a key is rotated by putting a new one first, letting
``reseal`` re-encrypt the rows (the worker does it at start), then dropping the old key.
A value stored before encryption existed (plain text) is still read, and ``reseal``
encrypts it. With no key, nothing with a credential can be stored (``MissingKey``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"
SECRET_WORDS = ("token", "secret", "password", "key", "credential")


class MissingKey(ValueError):
    """A credential was to be stored but no encryption key is configured."""


def is_url_key(name: str) -> bool:
    """Config keys that say where requests (and so credentials) are sent."""
    return name.lower().endswith("url")


def is_credential_key(name: str) -> bool:
    lowered = name.lower()
    return not is_url_key(name) and any(word in lowered for word in SECRET_WORDS)


def sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def check_key(key: str) -> str:
    """``key`` if it is a Fernet key (32 url-safe base64 bytes), else ValueError."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        raise ValueError("not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                         "python -c 'from cryptography.fernet import Fernet; "
                         "print(Fernet.generate_key().decode())')") from None
    return key


def new_key() -> str:
    return Fernet.generate_key().decode()


class CredentialBox:
    """Seals and opens the credential fields of a destination config."""

    def __init__(self, keys: Sequence[str] = ()):
        self.keys = tuple(keys)
        self._primary = Fernet(self.keys[0].encode()) if self.keys else None
        self._all = MultiFernet([Fernet(k.encode()) for k in self.keys]) if self.keys else None

    @property
    def ready(self) -> bool:
        return self._all is not None

    def seal(self, config: Mapping) -> dict:
        """``config`` with every plain credential encrypted with the first key."""
        out = dict(config)
        for name, value in config.items():
            if is_credential_key(name) and isinstance(value, str) and value and not sealed(value):
                if self._primary is None:
                    raise MissingKey(
                        f"cannot store {name!r}: no encryption key is configured for "
                        "credentials (set DNI_CREDENTIALS_KEYS)")
                out[name] = PREFIX + self._primary.encrypt(value.encode()).decode()
        return out

    def open(self, config: Mapping | None) -> dict:
        """``config`` with its credentials in plain text; ValueError if a key is missing."""
        out = dict(config or {})
        for name, value in out.items():
            if sealed(value):
                if self._all is None:
                    raise ValueError(f"{name!r} is encrypted but DNI_CREDENTIALS_KEYS is not set")
                try:
                    out[name] = self._all.decrypt(value[len(PREFIX):].encode()).decode()
                except InvalidToken:
                    raise ValueError(f"{name!r} cannot be decrypted with any key in "
                                     "DNI_CREDENTIALS_KEYS") from None
        return out

    def stale(self, config: Mapping | None) -> bool:
        """Whether ``config`` holds a plain credential, or one not sealed with the first key."""
        for name, value in (config or {}).items():
            if not (is_credential_key(name) or sealed(value)) or not value:
                continue
            if not sealed(value):
                return isinstance(value, str)
            try:
                self._primary.decrypt(value[len(PREFIX):].encode())
            except InvalidToken:
                return True
        return False


def reseal(db, box: CredentialBox) -> int:
    """Encrypt plain credentials and re-encrypt old ones with the first key; returns rows
    changed. Rows that no configured key opens are left alone (and logged by the worker)."""
    from sqlalchemy import select

    from attribution.conversions.models import ConversionDestination

    if not box.ready:
        return 0
    changed = 0
    for row in db.scalars(select(ConversionDestination).order_by(ConversionDestination.id)):
        if not box.stale(row.config):
            continue
        try:
            plain = box.open(row.config)
        except ValueError:
            continue
        row.config = box.seal(plain)
        changed += 1
    return changed
