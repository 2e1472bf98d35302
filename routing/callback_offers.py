"""Web callbacks on a routed pool: the business leg goes to the buyer the plan picks.

A callback's business leg is an offer of the plan (``routing.flow.route``: tiers in order,
eligibility, the buyer's caps reserved in Redis by ``routing.capacity``), one buyer at a
time: a callback rings one number, so a simultaneous tier is tried buyer by buyer. Each
attempt is its own routed call (``callback:<callback id>:<attempt>``), with its state in
Redis like any routed call's; the attempt's end settles the offer with ``flow.dial_ended``
(the slot released, a connection and a conversion counted, the revenue worked out by the
buyer's terms) and writes the routing log on the resulting call (``routing.calls.record``).
A plan whose buyers are all closed or full answers its fallback number, else nobody.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass

from attribution.models import Visit
from pools.keys import DEFAULT_PREFIX, routed_call_key
from routing import flow
from routing.calls import STATE_SECONDS, record
from routing.capacity import Capacity
from routing.directory import RoutingDirectory
from routing.eligibility import CallFacts

PROVIDER = "callback"  # the routed calls' provider in Redis: never a carrier's name
# A callback attempt's end (attribution.callbacks.calling outcomes) as an offer's outcome.
OFFER_OUTCOMES = {"declined": "declined", "business_unanswered": "no_answer",
                  "carrier_error": "failed", "no_news": "no_answer"}


@dataclass(frozen=True)
class Business:
    """Who the business leg rings: ``number`` (a buyer's target or the plan's fallback),
    and the buyer when one took the offer."""

    number: str | None
    buyer_id: int | None = None


def attempt_id(callback_id: str, attempt: int) -> str:
    return f"{callback_id}:{attempt}"


def one_at_a_time(plan: dict) -> dict:
    """The plan with every tier weighted: a callback's business leg rings one number."""
    tiers = [dict(tier, mode="weighted") for tier in plan.get("tiers") or []]
    return dict(plan, tiers=tiers, ivr=[], recovery=None)


class CallbackRouting:
    """Offers callbacks' business legs to routing plans' buyers (plain values, Redis)."""

    def __init__(self, redis, directory: RoutingDirectory, prefix: str = DEFAULT_PREFIX,
                 capacity: Capacity | None = None):
        self.redis = redis
        self.directory = directory
        self.prefix = prefix
        self.capacity = capacity or Capacity(redis, prefix)

    def knows(self, plan_id: int | None) -> bool:
        return plan_id is not None and plan_id in self.directory.current().plans

    def offer(self, callback_id: str, attempt: int, plan_id: int, facts: CallFacts,
              now: dt.datetime) -> Business:
        """Pick the buyer for this attempt (its slot reserved) and keep the offer's state;
        the plan's fallback number when no buyer can take it, else ``Business(None)``."""
        routed = attempt_id(callback_id, attempt)
        state = flow.new_state(plan_id, facts, now)
        verbs = flow.route(self._context(routed, state, now), state)
        self._save(routed, state)
        for verb in verbs:
            if isinstance(verb, flow.Offer):
                leg = verb.legs[0]
                return Business(leg.target, leg.buyer)
            if isinstance(verb, flow.Forward):
                return Business(verb.number)
        return Business(None)

    def settle(self, callback_id: str, attempt: int, outcome: str, talk: int | None,
               now: dt.datetime) -> dict | None:
        """End the attempt's offer: ``outcome`` "connected" (the visitor was bridged to the
        buyer, ``talk`` seconds) counts a connection, and a conversion when the talk time
        reaches the buyer's terms; anything else frees the slot. Once: a repeat answers the
        settled state. None when the attempt was not routed."""
        routed = attempt_id(callback_id, attempt)
        state = self.state(callback_id, attempt)
        if state is None or state["done"]:
            return state
        ctx = self._context(routed, state, now)
        entry = state["offers"][state["ringing"][0]] if state["ringing"] else None
        if entry is not None and outcome == "connected":
            # The business pressed 1 before the visitor was dialled: accepted, and its talk
            # with the visitor is what its terms count.
            entry["outcome"] = "accepted"
            entry["answered_at"] = entry["accepted_at"] = flow._ts(now) - int(talk or 0)
            state["buyer"], state["target"] = entry["buyer"], entry["target"]
            flow.dial_ended(ctx, state, "completed", int(talk or 0), caller_gone=True)
        else:
            if entry is not None:
                entry["outcome"] = OFFER_OUTCOMES.get(outcome, "accepted")
            flow.dial_ended(ctx, state, "failed", 0, caller_gone=True)
            if entry is not None:
                state["outcome"] = f"callback_{outcome}"
        self._save(routed, state)
        return state

    def state(self, callback_id: str, attempt: int) -> dict | None:
        raw = self.redis.get(self._key(attempt_id(callback_id, attempt)))
        return None if raw is None else json.loads(raw)

    # -- the machinery -----------------------------------------------------------------------

    def _key(self, routed: str) -> str:
        return routed_call_key(PROVIDER, routed, self.prefix)

    def _save(self, routed: str, state: dict) -> None:
        self.redis.set(self._key(routed), json.dumps(state), ex=STATE_SECONDS)

    def _context(self, routed: str, state: dict, now: dt.datetime) -> flow.Context:
        routing = self.directory.current()
        plan = one_at_a_time(routing.plans.get(state["plan"]) or {"tiers": []})
        buyers = {b: routing.buyers[b] for tier in plan["tiers"] for b in tier["buyers"]
                  if b in routing.buyers}
        caller, held = state["facts"].get("caller"), f"{PROVIDER}:{routed}"

        def reserve(ids: list[int]):
            return [self.capacity.reserve(b, buyers[b], held, caller, now) for b in ids]

        def release(buyer_id: int, *, connected: bool, converted: bool) -> bool:
            buyer = buyers.get(buyer_id) or routing.buyers.get(buyer_id)
            if buyer is None:
                return False
            return self.capacity.release(buyer_id, buyer, held, caller, now,
                                         connected=connected, converted=converted)

        # The same draw for the same attempt: a repeated offer asks the same buyers.
        return flow.Context(plan, buyers, now, reserve, release, random.Random(held))


class RoutedBusiness:
    """The business of a callback (``attribution.callbacks.calling.BusinessRouter``): a
    routed pool's plan picks a buyer, any other pool rings its destination."""

    def __init__(self, routing: CallbackRouting):
        self.routing = routing

    def business(self, db, callback, pool, now: dt.datetime) -> str | None:
        if pool is None or not self.routing.knows(pool.routing_plan_id):
            return pool.destination if pool is not None else None
        chosen = self.routing.offer(callback.id, callback.attempts, pool.routing_plan_id,
                                    callback_facts(db, callback, pool), now)
        return chosen.number

    def attempt_ended(self, db, callback, outcome: str, talk: int | None,
                      now: dt.datetime) -> None:
        """Settle the attempt's offer; the routing log goes on the call it made, if any
        (a buyer's conversion then settles the call's conversions: ``record``)."""
        state = self.routing.settle(callback.id, callback.attempts, outcome, talk, now)
        if state is not None and callback.call_id is not None and callback.visitor_call_id:
            record(db, callback.carrier or "callback", callback.visitor_call_id, state)


def callback_facts(db, callback, pool) -> CallFacts:
    """What buyers' filters may test of a callback: the visitor's number and the visit's
    attribution (the visit asked for the call)."""
    visit = db.get(Visit, callback.session_id)
    phone = callback.phone
    return CallFacts(
        caller=phone, caller_area_code=phone[2:5] if phone.startswith("+1") else None,
        source=visit.source if visit else None, medium=visit.medium if visit else None,
        campaign=visit.utm_campaign if visit else None,
        keyword=visit.utm_term if visit else None, publisher=pool.publisher)
