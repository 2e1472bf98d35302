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
    known = ", ".join(STRING_FIELDS + BOOL_FIELDS)
    return canonical_conditions(
        rules, "rule", takes_strings=STRING_FIELDS.__contains__, bool_fields=BOOL_FIELDS,
        unknown=lambda i, field: f"rule {i}: unknown field {field!r} (known: {known})")


def canonical_conditions(conditions: object, what: str, *, takes_strings, bool_fields,
                         unknown) -> list[dict]:
    """Conditions in canonical form (string values lower-cased, in lists), or ValueError.

    The one syntax of pool rules and of buyer filters (``routing``): ``takes_strings(name)``
    says which fields compare strings, ``bool_fields`` which take true or false, and
    ``unknown(i, name)`` words the error for any other field.
    """
    if conditions is None:
        return []
    if not isinstance(conditions, list) or len(conditions) > MAX_RULES:
        raise ValueError(f"{what}s must be a list of at most {MAX_RULES} conditions")
    clean = []
    for i, condition in enumerate(conditions):
        if not isinstance(condition, dict) or not condition:
            raise ValueError(f"{what} {i} must be a non-empty object")
        out: dict = {}
        for field, value in condition.items():
            if field in bool_fields:
                if not isinstance(value, bool):
                    raise ValueError(f"{what} {i}: {field} must be true or false")
                out[field] = value
            elif isinstance(field, str) and takes_strings(field):
                values = value if isinstance(value, list) else [value]
                if not values or len(values) > MAX_VALUES or not all(
                    isinstance(v, str) and 0 < len(v) <= 255 for v in values
                ):
                    raise ValueError(f"{what} {i}: {field} must be a string or a list of strings")
                out[field] = [v.lower() for v in values]
            else:
                raise ValueError(unknown(i, field))
        clean.append(out)
    return clean


def missed_field(condition: dict, value_of, bool_fields) -> str | None:
    """The first field of ``condition`` the facts (``value_of(name)``) fail, or None."""
    for field, expected in condition.items():
        actual = value_of(field)
        if field in bool_fields:
            if bool(actual) != expected:
                return field
        elif not any(fnmatchcase((actual or "").lower(), pattern) for pattern in expected):
            return field
    return None


def rule_matches(rule: dict, facts: VisitFacts) -> bool:
    return missed_field(rule, lambda field: getattr(facts, field), BOOL_FIELDS) is None


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
