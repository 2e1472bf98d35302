"""Identifier normalisation and hashing, per platform (docs/conversions.md).

Google and Meta hash the same phone number differently: Google hashes the E.164 form with
its ``+`` (``+16505550123``), Meta the digits only (``16505550123``). Both run
``phonenumbers`` first, because Google's own formatter does not add a missing country code.
"""

from __future__ import annotations

import base64
import hashlib

import phonenumbers

ENCODINGS = ("HEX", "BASE64")
_GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def e164(number: str, region: str | None = None) -> str:
    """``number`` in E.164 (``+16505550123``); ValueError when it is not a valid number.

    ``region`` (ISO 3166 alpha-2) is needed only when ``number`` does not start with ``+``.
    """
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {number!r}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"not a valid phone number: {number!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def sha256_encoded(text: str, encoding: str = "HEX") -> str:
    """SHA-256 of the UTF-8 text: lowercase hex, or standard base64 (Data Manager ``encoding``)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    if encoding == "HEX":
        return digest.hex()
    if encoding == "BASE64":
        return base64.b64encode(digest).decode("ascii")
    raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")


def google_phone(number: str, region: str | None = None) -> str:
    """What Google hashes: E.164 with the ``+``."""
    return e164(number, region)


def meta_phone(number: str, region: str | None = None) -> str:
    """What Meta hashes: country code and number, digits only, no ``+`` and no leading zeros."""
    return e164(number, region).lstrip("+").lstrip("0")


def google_phone_hash(number: str, region: str | None = None, encoding: str = "HEX") -> str:
    return sha256_encoded(google_phone(number, region), encoding)


def meta_phone_hash(number: str, region: str | None = None) -> str:
    return sha256_encoded(meta_phone(number, region), "HEX")


def google_email(address: str) -> str:
    """Trim and lowercase; for gmail.com/googlemail.com also drop dots and a ``+suffix``."""
    address = address.strip().lower()
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"


def meta_email(address: str) -> str:
    """Meta asks only for trim and lowercase."""
    address = address.strip().lower()
    if "@" not in address:
        raise ValueError(f"not an email address: {address!r}")
    return address


def google_email_hash(address: str, encoding: str = "HEX") -> str:
    return sha256_encoded(google_email(address), encoding)


def meta_email_hash(address: str) -> str:
    return sha256_encoded(meta_email(address), "HEX")
