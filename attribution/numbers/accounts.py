"""Carrier accounts: their credentials, sealed at rest and shown masked, and their APIs.

Credentials are sealed with the conversions' ``CredentialBox`` (the same keys,
``DNI_CREDENTIALS_KEYS``, and the same rotation). The secret fields (``auth_token``,
``api_key``) are write-only: answers show them masked; the ids (``account_sid``,
``connection_id``) are shown as they are. A PATCH may send a masked secret back to keep it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete as delete_rows
from sqlalchemy import select
from sqlalchemy.orm import Session

from attribution.conversions.credentials import CredentialBox
from attribution.conversions.destination import mask
from attribution.numbers.carriers import (
    TELNYX_API_URL,
    TWILIO_API_URL,
    NumberApi,
    TelnyxNumbers,
    TwilioNumbers,
)
from attribution.numbers.models import (
    CARRIERS,
    CarrierAccount,
    ProvisionedNumber,
    ProvisionOrder,
)

# The fields each carrier needs: (name, pattern, secret).
FIELDS = {
    "twilio": (("account_sid", re.compile(r"AC[0-9a-fA-F]{32}"), False),
               ("auth_token", re.compile(r"[0-9A-Za-z]{16,128}"), True)),
    "telnyx": (("api_key", re.compile(r"[0-9A-Za-z_\-.]{16,256}"), True),
               ("connection_id", re.compile(r"[0-9A-Za-z_\-]{1,64}"), False)),
}


class AccountError(ValueError):
    """A change to an account that cannot be made; ``status`` and ``fields`` for the API."""

    def __init__(self, message: str, *, status: int = 422, fields: dict | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.fields = message, status, fields
        self.code = code or {404: "not_found", 409: "conflict"}.get(status, "invalid")


@dataclass(frozen=True)
class CarrierUrls:
    """Where each carrier's API is reached (settings; a local stand-in in tests)."""

    twilio: str = TWILIO_API_URL
    telnyx: str = TELNYX_API_URL


def clean_credentials(carrier: str, given: dict, stored: dict | None = None) -> dict:
    """The credentials ``carrier`` needs, checked; a masked secret sent back keeps
    ``stored``'s. Raises AccountError naming each bad field."""
    out, bad = {}, {}
    for name, pattern, secret in FIELDS[carrier]:
        value = given.get(name)
        if secret and stored and isinstance(value, str) and value.startswith("****"):
            value = stored.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
            bad[name] = f"required: a {carrier} {name.replace('_', ' ')}"
            continue
        out[name] = value.strip()
    unknown = set(given) - {name for name, _, _ in FIELDS[carrier]}
    for name in sorted(unknown):
        bad[name] = f"not a {carrier} credential"
    if bad:
        raise AccountError("the credentials are incomplete or malformed",
                           fields={"credentials": bad})
    return out


def masked(account: CarrierAccount, box: CredentialBox) -> dict:
    """The account's credentials as they may be shown: ids whole, secrets masked."""
    try:
        plain = box.open(account.credentials)
    except ValueError:  # a key was removed: nothing secret can be shown anyway
        plain = {}
    out = {}
    for name, _pattern, secret in FIELDS.get(account.carrier, ()):
        value = plain.get(name)
        out[name] = (mask(value) if secret else value) if isinstance(value, str) else None
    return out


def create(db: Session, box: CredentialBox, *, name: str, carrier: str,
           credentials: dict) -> CarrierAccount:
    if carrier not in CARRIERS:
        raise AccountError("unknown carrier", fields={"carrier": f"one of {', '.join(CARRIERS)}"})
    _unique_name(db, name)
    account = CarrierAccount(name=name, carrier=carrier,
                             credentials=box.seal(clean_credentials(carrier, credentials)))
    db.add(account)
    db.flush()
    return account


def update(db: Session, box: CredentialBox, account: CarrierAccount, changes: dict) -> None:
    if "name" in changes and changes["name"] != account.name:
        _unique_name(db, changes["name"])
        account.name = changes["name"]
    if "credentials" in changes:
        stored = _opened(account, box)
        account.credentials = box.seal(clean_credentials(account.carrier,
                                                         changes["credentials"], stored))
    db.flush()


def delete(db: Session, account: CarrierAccount) -> None:
    """Delete an account no number was ever bought through (their release needs it)."""
    if db.scalar(select(ProvisionedNumber.id).where(ProvisionedNumber.account_id == account.id,
                                                    ProvisionedNumber.state != "failed")
                 .limit(1)):
        raise AccountError("numbers were bought through this account: release them first",
                           status=409, code="account_in_use")
    db.execute(delete_rows(ProvisionedNumber).where(ProvisionedNumber.account_id == account.id))
    db.execute(delete_rows(ProvisionOrder).where(ProvisionOrder.account_id == account.id))
    db.delete(account)
    db.flush()


def get(db: Session, account_ref) -> CarrierAccount:
    """An account by id or by name; AccountError 404 when there is none."""
    account = None
    if isinstance(account_ref, int) or (isinstance(account_ref, str) and account_ref.isdigit()):
        account = db.get(CarrierAccount, int(account_ref)) if int(account_ref) < 2**31 else None
    if account is None and isinstance(account_ref, str):
        account = db.scalar(select(CarrierAccount).where(CarrierAccount.name == account_ref))
    if account is None:
        raise AccountError(f"unknown carrier account {account_ref!r}", status=404,
                           code="unknown_account")
    return account


def api_for(account: CarrierAccount, box: CredentialBox, urls: CarrierUrls) -> NumberApi:
    """The carrier's number API with the account's credentials (opened only here)."""
    plain = _opened(account, box)
    if account.carrier == "twilio":
        return TwilioNumbers(plain["account_sid"], plain["auth_token"], urls.twilio)
    return TelnyxNumbers(plain["api_key"], plain["connection_id"], urls.telnyx)


def _unique_name(db: Session, name: str) -> None:
    if db.scalar(select(CarrierAccount.id).where(CarrierAccount.name == name)):
        raise AccountError(f"an account named {name!r} exists", status=409,
                           fields={"name": "already used"}, code="conflict")


def _opened(account: CarrierAccount, box: CredentialBox) -> dict:
    try:
        return box.open(account.credentials)
    except ValueError as exc:  # the key that sealed them is no longer configured
        raise AccountError(f"the account's credentials cannot be read: {exc}; set them again",
                           status=409, code="credentials_unreadable") from None
