"""Phone numbers in and out: everything stored and compared is E.164."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat


class InvalidNumber(ValueError):
    """A phone number that cannot be used; the message says why."""


def normalize(raw: object, region: str = "US") -> str:
    """Return ``raw`` as E.164, or raise InvalidNumber naming the problem.

    Numbers written without ``+`` are read in ``region`` (the site's country).
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidNumber("a phone number must be a non-empty string")
    text = raw.strip()
    if len(text) > 40:
        raise InvalidNumber("too long to be a phone number")
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise InvalidNumber(f"{text!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"{text!r} is not a valid number in its numbering plan")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


@lru_cache(maxsize=65_536)
def national_digits(e164: str) -> str:
    """National digits including any trunk prefix: +442079460000 -> 02079460000."""
    if len(e164) == 12 and e164.startswith("+1"):
        return e164[2:]  # NANP: the national form is the ten digits, no trunk prefix
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164.lstrip("+")
    national = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())
