"""The caller: number normalised to E.164 where possible, and where they are calling from."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, geocoder


@dataclass(frozen=True)
class Caller:
    number: str  # E.164, or the raw value (clipped) when it is not a phone number
    valid: bool
    country: str | None = None
    region: str | None = None
    city: str | None = None

    @property
    def area_code(self) -> str | None:
        """The NANP area code of a +1 number (used by geography rules)."""
        return self.number[2:5] if self.valid and self.number.startswith("+1") else None


def identify(raw: str | None, *, country: str | None = None, region: str | None = None,
             city: str | None = None) -> Caller:
    """Normalise the caller; geo from the carrier's fields when given, else from the number."""
    text = (raw or "").strip()
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else "US")
        valid = phonenumbers.is_valid_number(parsed)
    except NumberParseException:
        parsed, valid = None, False
    if not valid:
        # client:alice, sip:..., "anonymous": kept as received, never dropped.
        return Caller(text[:64] or "unknown", False, _clean(country), _clean(region), _clean(city))
    number = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if not (country or region or city):
        country = phonenumbers.region_code_for_number(parsed)
        place = geocoder.description_for_number(parsed, "en")
        # The geocoder says "Mountain View, CA" for US numbers, a region name elsewhere.
        city, _, state = place.rpartition(", ")
        region = state or place or None
        city = city or None
    return Caller(number, True, _clean(country), _clean(region), _clean(city))


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:128] or None
