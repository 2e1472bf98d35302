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
