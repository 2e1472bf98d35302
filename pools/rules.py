"""Pick a visit's pool for each swap target from the site's pools and their rules.

A pool's ``rules`` is a list of conditions; the pool matches a visit when any condition
matches, and a condition matches when all its fields do. A pool with no rules matches
every visit: it is the target's default. Among matching pools the highest ``priority``
wins, then the oldest pool.

    [{"source": "google", "medium": ["cpc", "ppc"]}, {"has_click_id": true}]

String fields compare case-insensitively and accept ``*`` wildcards (``/plumbing*``,
``*.bing.com``); a list matches when any of its values does.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

STRING_FIELDS = ("source", "medium", "campaign", "referrer_domain", "landing_path")
BOOL_FIELDS = ("has_click_id",)
MAX_RULES = 50
MAX_VALUES = 50


@dataclass(frozen=True)
class VisitFacts:
    """The facts of a visit that pool rules can test."""

    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    referrer_domain: str | None = None
    landing_path: str | None = None
    has_click_id: bool = False


def validate_rules(rules: object) -> list[dict]:
    """Return rules in canonical form (values lower-cased, lists), or raise ValueError."""
    if rules is None:
        return []
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise ValueError(f"rules must be a list of at most {MAX_RULES} conditions")
    clean = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not rule:
            raise ValueError(f"rule {i} must be a non-empty object")
        out: dict = {}
        for field, value in rule.items():
            if field in BOOL_FIELDS:
                if not isinstance(value, bool):
                    raise ValueError(f"rule {i}: {field} must be true or false")
                out[field] = value
            elif field in STRING_FIELDS:
                values = value if isinstance(value, list) else [value]
                if not values or len(values) > MAX_VALUES or not all(
                    isinstance(v, str) and 0 < len(v) <= 255 for v in values
                ):
                    raise ValueError(f"rule {i}: {field} must be a string or a list of strings")
                out[field] = [v.lower() for v in values]
            else:
                known = ", ".join(STRING_FIELDS + BOOL_FIELDS)
                raise ValueError(f"rule {i}: unknown field {field!r} (known: {known})")
        clean.append(out)
    return clean


def rule_matches(rule: dict, facts: VisitFacts) -> bool:
    for field, expected in rule.items():
        if field in BOOL_FIELDS:
            if bool(getattr(facts, field)) != expected:
                return False
            continue
        actual = (getattr(facts, field) or "").lower()
        if not any(fnmatchcase(actual, pattern) for pattern in expected):
            return False
    return True


def pool_matches(rules: list[dict], facts: VisitFacts) -> bool:
    return not rules or any(rule_matches(rule, facts) for rule in rules)


def choose(pools, facts: VisitFacts) -> dict:
    """Return {target: pool} for every target that has a matching pool.

    ``pools`` are objects with ``id``, ``target``, ``priority`` and ``rules``.
    """
    chosen: dict = {}
    for pool in sorted(pools, key=lambda p: (-p.priority, p.id)):
        if pool.target not in chosen and pool_matches(pool.rules, facts):
            chosen[pool.target] = pool
    return chosen
