"""API tokens: admin, read-only, or scoped to one publisher; only their hashes are stored.

``DNI_ADMIN_TOKEN`` is the bootstrap admin; other tokens are created through the API and
shown once. A publisher token sees only its publisher's pools, static numbers, calls and
reports; a read-only token sees everything and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pools.models import Base, utcnow

SCOPES = ("admin", "read_only", "publisher")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    publisher: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


@dataclass(frozen=True)
class Principal:
    scope: str
    publisher: str | None = None
    token_id: int | None = None

    @property
    def can_write(self) -> bool:
        return self.scope == "admin"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def derive_key(secret: str, purpose: str) -> bytes:
    """A key for one ``purpose`` derived from ``DNI_SECRET_KEY`` (HKDF-SHA256).

    Visitor session ids and dashboard cookies each sign with their own key: one leaked
    reveals nothing of the other. Dashboard logins end through their records in Redis
    (logout, a revoked token, a new DNI_ADMIN_TOKEN), never by changing DNI_SECRET_KEY,
    which would also end every visitor's session id.
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"dni {purpose}".encode()).derive(secret.encode())


def fingerprint(key: bytes, token: str) -> str:
    """A keyed digest of ``token``: proves later that the same token is still in force."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def create_token(db: Session, name: str, scope: str, publisher: str | None) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and never stored."""
    secret = "dni_" + secrets.token_urlsafe(32)
    row = ApiToken(name=name, scope=scope, publisher=publisher, token_hash=digest(secret))
    db.add(row)
    db.flush()
    return row, secret


def principal_for(db: Session, given: str, admin_token: str | None) -> Principal | None:
    """Who a bearer token belongs to, or None."""
    if not given:
        return None
    if admin_token and hmac.compare_digest(given.encode(), admin_token.encode()):
        return Principal("admin")
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == digest(given),
                                           ApiToken.revoked_at.is_(None)))
    return Principal(row.scope, row.publisher, row.id) if row else None
