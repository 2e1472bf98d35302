"""A site's fraud policy: score thresholds and the settings of the signals.

Below ``flag`` nothing happens; from ``flag`` the call is held for review (no payout, no
ad-platform conversion until approved); from ``challenge`` the caller must press 1 before
the call is routed; from ``block`` it is rejected before it rings (and still stored).

A site acts on scores once it has a policy (``enforce``, true from its first PUT): without
one, every call's signals and score are stored and nothing else changes, since turning
holds on for existing sites would change what their calls earn on an upgrade. A caller on
the block list is rejected whatever the policy: an entry is the operator's explicit word.
"""

from __future__ import annotations

DEFAULTS = {
    "enforce": False,  # act on scores (hold, challenge, block); a site's policy turns it on
    "flag": 50, "challenge": 70, "block": 90,
    "burst_calls": 4, "burst_minutes": 10,  # repeat_burst: N calls within M minutes
    "cross_days": 7,  # cross_publisher: other publishers reached within N days
    "instant_seconds": 5,  # instant_call: dialled within N seconds of the number shown
    "hug_seconds": 5,  # threshold_hugging: ended at most N seconds past a threshold
    "expected_countries": None,  # caller_id_invalid: e.g. ["US", "CA"]; None: any
    "challenge_text": "To be connected, please press 1.",
}
THRESHOLDS = ("flag", "challenge", "block")
BOUNDS = {"burst_calls": (2, 1000), "burst_minutes": (1, 1440), "cross_days": (1, 90),
          "instant_seconds": (0, 600), "hug_seconds": (0, 600)}
ACTIONS = ("none", "flag", "challenge", "block")


def validate_policy(raw: object) -> dict:
    """The policy's own settings (not the defaults) if well formed, else ValueError."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("policy must be an object")
    if unknown := set(raw) - set(DEFAULTS):
        raise ValueError(f"unknown policy settings: {', '.join(sorted(unknown))}")
    for name in THRESHOLDS:
        if name in raw and not _whole(raw[name], 0, 101):
            raise ValueError(f"{name} must be a whole number from 0 to 101 (101: never)")
    for name, (low, high) in BOUNDS.items():
        if name in raw and not _whole(raw[name], low, high):
            raise ValueError(f"{name} must be a whole number from {low} to {high}")
    merged = DEFAULTS | raw
    if not merged["flag"] <= merged["challenge"] <= merged["block"]:
        raise ValueError("thresholds must rise: flag <= challenge <= block")
    if "enforce" in raw and not isinstance(raw["enforce"], bool):
        raise ValueError("enforce must be true or false")
    countries = raw.get("expected_countries")
    if countries is not None and not (isinstance(countries, list) and all(
            isinstance(c, str) and len(c) == 2 and c.isalpha() for c in countries)):
        raise ValueError("expected_countries must be a list of two-letter country codes")
    text = raw.get("challenge_text")
    if text is not None and not (isinstance(text, str) and 0 < len(text) <= 300):
        raise ValueError("challenge_text must be a string of 1 to 300 characters")
    return dict(raw)


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def effective(site_policy: dict | None) -> dict:
    """The defaults, under the site's own settings; a site with a policy enforces it."""
    return DEFAULTS | {"enforce": site_policy is not None} | (site_policy or {})


def action_for(score: int, policy: dict, *, pre_ring: bool) -> str:
    """What the score calls for. Before the call rings every action is open; afterwards a
    call can only be flagged (it already rang). Not enforced: nothing."""
    if not policy.get("enforce", True):
        return "none"
    if pre_ring and score >= policy["block"]:
        return "block"
    if pre_ring and score >= policy["challenge"]:
        return "challenge"
    return "flag" if score >= policy["flag"] else "none"
