"""Dashboard logins kept in Redis: the cookie carries only a random login id.

A record names the token that opened it (its id, or for the bootstrap admin a keyed
fingerprint of ``DNI_ADMIN_TOKEN``) and expires after ``DNI_DASHBOARD_SESSION_HOURS``.
Logging out deletes the record, so a copied cookie stops working with it; every request
checks the token is still in force, so revoking a token or changing ``DNI_ADMIN_TOKEN``
ends the logins it opened.
"""

from __future__ import annotations

import hmac
import json
import secrets

from dni_server.tokens import Principal, fingerprint
from pools.keys import dashboard_login_key


class LoginStore:
    def __init__(self, redis, prefix: str, lifetime_seconds: int, fingerprint_key: bytes):
        self.redis = redis
        self.prefix = prefix
        self.lifetime_seconds = lifetime_seconds
        self.fingerprint_key = fingerprint_key

    def _key(self, login_id: str) -> str:
        return dashboard_login_key(login_id, self.prefix)

    def open(self, principal: Principal, token: str) -> str:
        """Record a login by ``token``; returns the login id for the cookie."""
        login_id = secrets.token_urlsafe(32)
        record = {"scope": principal.scope, "publisher": principal.publisher,
                  "token_id": principal.token_id,
                  "token": fingerprint(self.fingerprint_key, token)}
        self.redis.set(self._key(login_id), json.dumps(record), ex=self.lifetime_seconds)
        return login_id

    def find(self, login_id: str) -> dict | None:
        raw = self.redis.get(self._key(login_id))
        return json.loads(raw) if raw else None

    def close(self, login_id: str) -> None:
        self.redis.delete(self._key(login_id))

    def opened_by(self, record: dict, token: str | None) -> bool:
        """Whether ``record`` was opened with ``token`` (the admin token now in force)."""
        return bool(token) and hmac.compare_digest(
            record.get("token", ""), fingerprint(self.fingerprint_key, token))
