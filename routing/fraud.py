"""What routing tells fraud checks (``attribution.fraud``): the talk time a routed call's
buyer counted and the buyer's conversion threshold, for ``threshold_hugging``."""

from __future__ import annotations

from sqlalchemy import select

from attribution.fraud import assess
from attribution.models import Call
from routing.models import Buyer


def buyer_talk(db, provider: str, call_id: str, state: dict) -> None:
    """From a finished routing log's state: the winning buyer's talk seconds against its
    ``conversion.min_duration``, given to the call (a call not in SQL yet is left as is)."""
    offer = next((o for o in reversed(state["offers"])
                  if o["buyer"] == state["buyer"] and o.get("talk_seconds") is not None), None)
    if offer is None:
        return
    buyer = db.get(Buyer, state["buyer"])
    threshold = ((buyer.spec if buyer is not None else {}).get("conversion") or {}).get(
        "min_duration")
    if not threshold:
        return
    call = db.scalar(select(Call).where(Call.provider == provider,
                                        Call.provider_call_id == call_id))
    if call is not None:
        assess.buyer_talk(db, call, int(offer["talk_seconds"]), int(threshold))
