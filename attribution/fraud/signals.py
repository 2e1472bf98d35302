"""Fraud signals: each a named fact about one call, its value, and whether it fired.

Pure functions of what is already known (the carrier's fields, the block list, the
caller's recent calls, the call's match): no SQL, no Redis. ``attribution.fraud.screen``
gathers their inputs before the call rings; ``attribution.fraud.assess`` adds the ones the
match and the call's end tell. Every signal is stored on the call as ``{name, value,
fired}``, so a score is never an opaque number; recording analysis plugs in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from attribution.insight import signals as recording

# Twilio's StirVerstat values (voice webhook, the caller's leg): "TN-Validation-Passed-A",
# "-B", "-C", "TN-Validation-Failed-A" (and -B, -C), "No-TN-Validation"; absent when the
# caller's network sent no identity. Telnyx's Call Control ``call.initiated`` payload says
# ``shaken_stir_attestation`` ("A" | "B" | "C") and ``shaken_stir_validated`` (a boolean).
PASSED, FAILED, NOT_VALIDATED = "TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation"
ANONYMOUS = {"anonymous", "restricted", "unknown", "private", "unavailable", "blocked", ""}


@dataclass(frozen=True)
class Signal:
    name: str
    value: object
    fired: bool

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "fired": self.fired}


def attestation_of(provider: str, payload: dict) -> dict | None:
    """The carrier's STIR/SHAKEN verdict as ``{"level": "A"|"B"|"C"|None, "verified":
    True|False|None, "raw": ...}``; None when the carrier said nothing (no identity sent).

    Twilio: by a public report (a project's webhook code that drops the parameter before
    checking ``X-Twilio-Signature``, found in its logs), ``StirVerstat`` is added to the
    request after Twilio signs it, so it may not be covered by the signature. It is read
    as what the carrier sent on a request whose other fields are signed: evidence for a
    score, never an authenticated fact. Telnyx signs the whole JSON body (Ed25519).
    """
    if provider in ("twilio", "signalwire"):
        raw = payload.get("StirVerstat")
        if not isinstance(raw, str) or not raw.strip():
            return None
        raw = raw.strip()[:64]
        level = raw[-1] if raw[-2:-1] == "-" and raw[-1] in "ABC" else None
        if raw.startswith(PASSED):
            return {"level": level or "A", "verified": True, "raw": raw}
        if raw.startswith(FAILED):
            return {"level": level, "verified": False, "raw": raw}
        return {"level": None, "verified": None, "raw": raw}  # No-TN-Validation, or new
    if provider == "telnyx":
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        body = data.get("payload") if isinstance(data.get("payload"), dict) else {}
        level, validated = body.get("shaken_stir_attestation"), body.get("shaken_stir_validated")
        if not isinstance(level, str) or level.upper() not in ("A", "B", "C"):
            return None
        return {"level": level.upper(),
                "verified": validated if isinstance(validated, bool) else None,
                "raw": f"{level.upper()}:{validated}"}
    return None


def stir_shaken(attestation: dict | None) -> Signal:
    """Fires on a failed verification or C-level (gateway) attestation, and on a network
    that says it could not validate; absent (no identity sent) is not evidence."""
    if attestation is None:
        return Signal("stir_shaken", None, False)
    fired = attestation["verified"] is False or attestation["level"] == "C" or (
        attestation["raw"] == NOT_VALIDATED)
    return Signal("stir_shaken", attestation, fired)


def caller_id_invalid(raw: str | None, expected_countries: list[str] | None = None) -> Signal:
    """Anonymous or restricted, not a valid E.164 number, premium rate, or from a country
    outside ``expected_countries`` (when the policy names some)."""
    text = (raw or "").strip()
    if text.lower().lstrip("+") in ANONYMOUS:
        return Signal("caller_id_invalid", "anonymous", True)
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else "US")
        valid = phonenumbers.is_valid_number(parsed)
    except NumberParseException:
        valid = False
    if not valid:
        return Signal("caller_id_invalid", "not_e164", True)
    if phonenumbers.number_type(parsed) == PhoneNumberType.PREMIUM_RATE:
        return Signal("caller_id_invalid", "premium_rate", True)
    country = phonenumbers.region_code_for_number(parsed)
    if expected_countries and country not in {c.upper() for c in expected_countries}:
        return Signal("caller_id_invalid", f"country:{country}", True)
    return Signal("caller_id_invalid", None, False)


def listed(entry: dict | None) -> Signal:
    """The caller matched a block-list entry (number or prefix): its reason and scope."""
    if entry is None:
        return Signal("listed", None, False)
    return Signal("listed", {"match": entry["value"], "reason": entry.get("reason"),
                             "scope": "site" if entry.get("site_id") else "network"}, True)


def repeat_burst(calls_in_window: int | None, limit: int, minutes: int) -> Signal:
    """The same caller ``limit`` times or more within ``minutes`` (this call included)."""
    if calls_in_window is None:
        return Signal("repeat_burst", None, False)
    return Signal("repeat_burst", {"calls": calls_in_window, "minutes": minutes},
                  calls_in_window >= limit)


def cross_publisher(other_publishers: int | None, days: int) -> Signal:
    """The caller reached numbers of other publishers within ``days``. Only how many is
    kept: a publisher never sees another's name or caller history."""
    if other_publishers is None:
        return Signal("cross_publisher", None, False)
    return Signal("cross_publisher", {"other_publishers": other_publishers, "days": days},
                  other_publishers >= 1)


def scraped_number(pool_number: bool, method: str | None, session_id: str | None) -> Signal:
    """A pool number that nobody held at the call's time and that no recent visitor saw:
    the number was harvested from a page and dialled later."""
    fired = pool_number and session_id is None and method not in ("fallback",)
    return Signal("scraped_number", {"method": method} if pool_number else None, fired)


def instant_call(seconds_since_shown: float | None, within: int) -> Signal:
    """The call came within ``within`` seconds of the number being shown to the visitor."""
    if seconds_since_shown is None:
        return Signal("instant_call", None, False)
    seconds = round(max(seconds_since_shown, 0.0), 1)
    return Signal("instant_call", {"seconds": seconds}, seconds <= within)


def geo_mismatch(visit_country: str | None, visit_region: str | None,
                 caller_country: str | None, caller_region: str | None) -> Signal:
    """The visit's location and the caller's number region disagree (a weak signal: people
    travel and keep their numbers); only when both sides are known."""
    if not (visit_country and caller_country):
        return Signal("geo_mismatch", None, False)
    value = {"visit": [visit_country, visit_region], "caller": [caller_country, caller_region]}
    if visit_country.upper() != caller_country.upper():
        return Signal("geo_mismatch", value | {"level": "country"}, True)
    regions = visit_region and caller_region and visit_region.upper() != caller_region.upper()
    return Signal("geo_mismatch", value | {"level": "region"} if regions else value,
                  bool(regions))


def threshold_hugging(duration: int | None, thresholds: list[int], within: int,
                      hugged_before: int = 0,
                      buyer: tuple[int, int] | None = None) -> Signal:
    """Talk time ended just past a qualification or buyer conversion threshold (at most
    ``within`` seconds above it): a caller holding the line to be billable. One honest call
    in fifty ends there by chance, and an honest caller who calls again does so by chance
    too; the same caller's earlier calls ending there as well (``hugged_before``) is the
    farm's mark, so it is kept with it. ``buyer``: a routed call's talk time as its buyer
    counts it, and that buyer's ``conversion.min_duration``."""
    thresholds = [t for t in thresholds if t > 0]
    pairs = [(duration, t) for t in thresholds] if duration is not None else []
    if buyer is not None and buyer[1] > 0:
        pairs.append(buyer)
    if not pairs:
        return Signal("threshold_hugging", None, False)
    value = {"duration": duration, "thresholds": thresholds} | (
        {"buyer": {"talk_seconds": buyer[0], "min_duration": buyer[1]}} if buyer else {})
    above = [talk - t for talk, t in pairs if 0 <= talk - t <= within]
    if not above:
        return Signal("threshold_hugging", value, False)
    return Signal("threshold_hugging", value | {"seconds_past": min(above)}
                  | ({"hugged_before": hugged_before} if hugged_before else {}), True)


def shared_lease(callers_on_lease: int | None) -> Signal:
    """Three or more distinct callers on one visitor's lease: the number went round."""
    if callers_on_lease is None:
        return Signal("shared_lease", None, False)
    return Signal("shared_lease", {"callers": callers_on_lease}, callers_on_lease >= 3)


def from_recording(insight: dict | None) -> list[Signal]:
    """What the recording's analysis (``attribution.insight``) says: only one side talked
    (a parked or scripted call), a machine answered, and the site's ``fraud:`` keywords
    heard. Nothing while the recording is not analysed: unknown is not "no"."""
    one_sided, voicemail = recording.one_sided(insight), recording.voicemail(insight)
    if one_sided is None and voicemail is None:
        return []
    heard = [name for name in recording.fraud_signals(insight)
             if name not in ("one_sided", "voicemail")]
    return [Signal("one_sided", None, bool(one_sided)),
            Signal("voicemail", None, bool(voicemail)),
            Signal("fraud_keyword", heard or None, bool(heard))]
