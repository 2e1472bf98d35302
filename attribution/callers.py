"""The caller: number normalised to E.164 where possible, and where they are calling from."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

# The geocoder names North American regions in full when it knows no city ("California")
# and by code otherwise ("Mountain View, CA"); regions are stored as codes either way.
NANP_REGIONS = dict(pair.split(":") for pair in (
    "Alabama:AL;Alaska:AK;Arizona:AZ;Arkansas:AR;California:CA;Colorado:CO;Connecticut:CT;"
    "Delaware:DE;Florida:FL;Georgia:GA;Hawaii:HI;Idaho:ID;Illinois:IL;Indiana:IN;Iowa:IA;"
    "Kansas:KS;Kentucky:KY;Louisiana:LA;Maine:ME;Maryland:MD;Massachusetts:MA;Michigan:MI;"
    "Minnesota:MN;Mississippi:MS;Missouri:MO;Montana:MT;Nebraska:NE;Nevada:NV;"
    "New Hampshire:NH;New Jersey:NJ;New Mexico:NM;New York:NY;North Carolina:NC;"
    "North Dakota:ND;Ohio:OH;Oklahoma:OK;Oregon:OR;Pennsylvania:PA;Rhode Island:RI;"
    "South Carolina:SC;South Dakota:SD;Tennessee:TN;Texas:TX;Utah:UT;Vermont:VT;Virginia:VA;"
    "Washington:WA;Washington State:WA;West Virginia:WV;Wisconsin:WI;Wyoming:WY;Washington D.C.:DC;"
    "Puerto Rico:PR;Alberta:AB;British Columbia:BC;Manitoba:MB;New Brunswick:NB;"
    "Newfoundland and Labrador:NL;Nova Scotia:NS;Ontario:ON;Prince Edward Island:PE;"
    "Quebec:QC;Saskatchewan:SK").split(";"))


@dataclass(frozen=True)
class Caller:
    number: str  # E.164, or the raw value (clipped) when it is not a phone number
    valid: bool
    country: str | None = None
    region: str | None = None
    city: str | None = None


def area_code(number: str, valid: bool) -> str | None:
    """The NANP area code of a valid +1 number (geography rules test it)."""
    return number[2:5] if valid and number.startswith("+1") else None


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
        # Imported here: its data takes over half a second to load, which every web
        # worker would otherwise pay at start even though only calls need it.
        from phonenumbers import geocoder

        country = phonenumbers.region_code_for_number(parsed)
        place = geocoder.description_for_number(parsed, "en")
        # The geocoder says "Mountain View, CA" for US numbers, a region name elsewhere.
        city, _, state = place.rpartition(", ")
        region = state or place or None
        if country in ("US", "CA"):
            region = NANP_REGIONS.get(region, region)
        city = city or None
    return Caller(number, True, _clean(country), _clean(region), _clean(city))


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:128] or None
