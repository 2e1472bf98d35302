"""What a routed call earns: a buyer conversion brings the buyer's revenue.

A call converts for its buyer when its talk time reaches ``conversion.min_duration``, timed
from the buyer's answer, or from the accept key press (``"from": "accept"``: the whisper and
the buyer's decision are not talk). The publisher's payout stays with the pool's or static
number's own qualification rules; the margin is what is left between the two.

Ad-platform conversion rules with ``buyer_converted_only`` fire on a buyer's conversion:
this module tells attribution's outbox where that fact lives (the call's routing log), and
``settle`` queues the conversion in the transaction that writes the log.

What overrides what: a disqualifying disposition (``spam``, ``not_a_lead``, ...) takes
away the publisher's payout and, for a ``qualified_only`` rule, the ad-platform conversion
(a sent one is retracted); the buyer's revenue in the call's routing log is what the buyer
owes by its own terms, and stays. A rule that excludes the disposition
(``dispositions_excluded``) withdraws a buyer-conversion event too.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from attribution.conversions import outbox
from attribution.models import Call
from attribution.webhooks import events as webhook_events
from routing.models import CallRouting


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


def buyer_converted(db, call) -> bool:
    """Whether a buyer converted ``call``, from its routing log (attribution asks)."""
    return bool(db.scalar(select(CallRouting.converted).where(
        CallRouting.provider == call.provider,
        CallRouting.provider_call_id == call.provider_call_id)))


def settle(db, provider: str, call_id: str, converted: bool) -> None:
    """A buyer's conversion changed on the call's log: bring its ad-platform conversions in
    line, in the caller's transaction. A call not in SQL yet is settled when it arrives
    (its ingest asks ``buyer_converted``)."""
    call = db.scalar(select(Call).where(Call.provider == provider,
                                        Call.provider_call_id == call_id))
    if call is not None:
        outbox.on_qualification(db, call, buyer_converted=converted)
        webhook_events.call_converted(db, call, converted)


outbox.read_buyer_conversions(buyer_converted)
