"""A call's risk score, 0-100, as the sum of named contributions: never an opaque number.

Each fired signal adds its weight (some by how strongly they fired); the score is capped at
100. A weak signal (one that fires on honest calls by chance: a second publisher, talk time
just past a threshold once, an unusual caller id, a distant visit) weighs less than the
default ``flag`` (50), so alone it never holds a call: it takes two pieces of evidence, or
one strong one (the block list, a failed STIR/SHAKEN verification, a premium-rate caller
id, a burst of calls, rotation through publishers, a threshold hugged again). Only the
signals known before the call rings (``PRE_RING``) may challenge or block it; the others
can only hold it for review.
"""

from __future__ import annotations

from attribution.fraud.signals import Signal

PRE_RING = ("listed", "stir_shaken", "caller_id_invalid", "repeat_burst", "cross_publisher")
WEIGHTS = {"listed": 100, "caller_id_invalid": 45, "repeat_burst": 40, "cross_publisher": 50,
           "scraped_number": 30, "instant_call": 30, "geo_mismatch": 10,
           "threshold_hugging": 30, "shared_lease": 45,
           # From the recording (attribution.insight): one side only is a sign of a parked
           # or scripted call but also of a caller on hold, so alone it only adds up; a
           # voicemail is a poor call more than a fraud; a keyword the site itself listed as
           # fraud is its own judgement.
           "one_sided": 40, "voicemail": 15, "fraud_keyword": 50}


def weight(signal: Signal) -> int:
    """What one fired signal adds."""
    if not signal.fired:
        return 0
    value = signal.value if isinstance(signal.value, dict) else {}
    if signal.name == "stir_shaken":
        # A failed verification is a spoofed or unsigned-by-its-owner number; C-level only
        # says the call entered through a gateway.
        return 50 if value.get("verified") is False else 15 if value.get("level") == "C" else 10
    if signal.name == "caller_id_invalid":
        kind = str(signal.value or "")
        # Withheld or malformed ids are common among honest callers: enough to hold a call
        # for review, not to challenge it (a site lowers ``challenge`` to do that).
        return 80 if kind == "premium_rate" else 40 if kind.startswith("country:") else 45
    if signal.name == "threshold_hugging":
        # Once is chance (one honest call in fifty); the caller's earlier calls ending
        # there too is a pattern.
        return 50 if value.get("hugged_before") else 30
    if signal.name == "cross_publisher":
        # One other publisher is a caller shopping around (common enough among honest
        # callers that alone it must not hold a call); two or more is rotation.
        return 30 if value.get("other_publishers", 0) <= 1 else 60
    if signal.name == "repeat_burst":
        return min(70, WEIGHTS["repeat_burst"] + 10 * max(0, value.get("calls", 0) - 3))
    return WEIGHTS.get(signal.name, 20)  # a signal added later


def score(signals: list[Signal], *, pre_ring_only: bool = False) -> tuple[int, list[dict]]:
    """(score, contributions [{"signal", "points"}]) of the fired signals."""
    parts = [{"signal": s.name, "points": weight(s)} for s in signals
             if s.fired and (not pre_ring_only or s.name in PRE_RING)]
    return min(100, sum(p["points"] for p in parts)), parts
