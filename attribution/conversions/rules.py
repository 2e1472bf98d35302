"""Conversion rules: which calls count, for how much, and with what consent.

Pure functions over a rule row and a call row; no queries. The rule for a call is its
pool's rule if the pool has one, else its site's rule (``pool_id`` unset).

``buyer_converted_only`` makes a rule fire on a pay-per-call buyer's conversion (the buyer
talked long enough to pay for the call) instead of, or beside, the publisher's
qualification: whether a buyer converted the call is a fact the routing layer knows, and
hands in (``attribution.conversions.outbox``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from attribution.conversions.models import ConversionRule

TERMINAL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
CONSENT_CHOICES = ("granted", "denied")


def pick(rules: Iterable[ConversionRule], pool_id: int | None) -> ConversionRule | None:
    """The enabled rule that governs a call of ``pool_id``: the pool's, else the site's."""
    site_rule = None
    for rule in rules:
        if not rule.enabled:
            continue
        if rule.pool_id is not None and rule.pool_id == pool_id:
            return rule
        if rule.pool_id is None and site_rule is None:
            site_rule = rule
    return site_rule


def settled(call) -> bool:
    """A call counts only once it is over (or someone gave it a disposition)."""
    return call.status in TERMINAL_STATUSES or call.disposition is not None


def counts(rule: ConversionRule, call, buyer_converted: bool = False) -> bool:
    """Whether the call is a conversion under ``rule`` right now; ``buyer_converted``: a
    buyer converted it (only a ``buyer_converted_only`` rule asks)."""
    if rule.buyer_converted_only and not buyer_converted:
        return False
    if getattr(call, "review_state", None) in ("pending", "rejected"):
        return False  # held for fraud review (attribution.fraud): not until approved
    # A buyer's conversion is settled when the buyer's leg ends, before the caller's does.
    if not settled(call) and not (rule.buyer_converted_only and buyer_converted):
        return False
    if rule.qualified_only and not call.qualified:
        return False
    if rule.min_duration and (call.duration or 0) < rule.min_duration:
        return False
    if call.disposition in (rule.dispositions_excluded or []):
        return False
    return not rule.dispositions_included or call.disposition in rule.dispositions_included


def value_of(rule: ConversionRule, call, owner_revenue: Decimal | None) -> Decimal | None:
    """The conversion's value: fixed, the pool's (or static number's) revenue, or the
    disposition's value (falling back to the fixed value when the disposition has none)."""
    if rule.value_source == "pool_revenue":
        return owner_revenue
    if rule.value_source == "disposition" and call.disposition_value is not None:
        return call.disposition_value
    return rule.value


def consent_of(rule: ConversionRule, ad_consent: bool | None) -> bool:
    """The visitor's answer, or the rule's default for visits that were never asked."""
    if ad_consent is None:
        return rule.unknown_consent != "denied"
    return bool(ad_consent)
