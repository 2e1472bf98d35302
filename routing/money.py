"""What a routed call earns: a buyer conversion brings the buyer's revenue.

A call converts for its buyer when its talk time reaches ``conversion.min_duration``, timed
from the buyer's answer, or from the accept key press (``"from": "accept"``: the whisper and
the buyer's decision are not talk). The publisher's payout stays with the pool's or static
number's own qualification rules; the margin is what is left between the two.
"""

from __future__ import annotations

from decimal import Decimal


def talk_seconds(buyer: dict, duration: int | None, accept_delay: float | None) -> int:
    """The talk time that counts for ``buyer``: the buyer leg's ``duration`` (from its
    answer), less the seconds from answer to accept when it converts from the accept."""
    talk = int(duration or 0)
    if (buyer.get("conversion") or {}).get("from") == "accept":
        talk -= int(round(accept_delay or 0))
    return max(0, talk)


def converts(buyer: dict, talk: int) -> bool:
    return talk >= int((buyer.get("conversion") or {}).get("min_duration", 0))


def revenue(buyer: dict, converted: bool) -> Decimal:
    return Decimal(str(buyer.get("revenue") or "0")) if converted else Decimal("0")


def margin(revenue_amount: Decimal, payout: Decimal) -> Decimal:
    return Decimal(revenue_amount or 0) - Decimal(payout or 0)
