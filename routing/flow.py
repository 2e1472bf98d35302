"""How a routing plan unfolds for one call: a small, pure model, whatever the carrier.

The call's progress is a JSON-able ``state`` dict (kept in Redis between webhooks by
``routing.calls``, so any app server can take the next one). Each function here takes the
plan, the state and what just happened, updates the state, and answers carrier-neutral
verbs (``Say``, ``Ask``, ``Offer``, ``Forward``, ``Hangup``) that a carrier adapter renders.
Buyers' capacity is asked through the ``reserve`` and ``release`` functions given in.

The unfolding: the IVR steps in order (``say``; ``press``, a caller challenge: no key, no
call; ``zip``, which also fills the caller's state; ``menu``, which sets a tag), each asked
again up to its ``retries``; then the tiers in order, a weighted tier offering the call to
one buyer at a time, a simultaneous one to every eligible buyer at once; an offer that is
not answered, busy, declined or failed goes on to the next buyer, then the next tier; a
buyer who hangs up within ``recovery.min_seconds`` has the caller offered again, up to
``recovery.attempts`` times; nobody left: the fallback number, else its message and a
hang-up. Every path ends in a connection or a hang-up: never dead air, never an endless ring.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from routing import money
from routing.capacity import Reservation
from routing.choose import candidates
from routing.eligibility import TAG_NAME, CallFacts, static_refusal
from routing.zips import zip_state

STEP_TYPES = ("say", "press", "zip", "menu")
DIGITS = set("0123456789*#")
DEFAULT_MESSAGE = "Sorry, no one can take your call right now. Please call again later."
ZIP_DIGITS = 5
GATHER_TIMEOUT = 6  # seconds the caller has to key an answer
MAX_TEXT = 500


# -- verbs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Ask:
    """Gather ``digits`` keys (or until # for a ZIP) for IVR step ``step``, saying ``text``."""

    step: int
    text: str
    digits: int


@dataclass(frozen=True)
class Leg:
    """One buyer target rung by an offer."""

    buyer: int
    target: str  # "+1..." or "sip:..."
    whisper: str | None
    accept: bool


@dataclass(frozen=True)
class Offer:
    """Ring every leg at once; the first to answer (and accept) gets the call."""

    legs: tuple[Leg, ...]
    ring_seconds: int


@dataclass(frozen=True)
class Forward:
    number: str


@dataclass(frozen=True)
class Hangup:
    pass


# -- validation --------------------------------------------------------------------------------


def validate_ivr(steps: object) -> list[dict]:
    """IVR steps in canonical form (defaults filled in), or ValueError naming the step."""
    if steps is None:
        return []
    if not isinstance(steps, list) or len(steps) > 20:
        raise ValueError("ivr must be a list of at most 20 steps")
    clean = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("type") not in STEP_TYPES:
            raise ValueError(f"step {i}: type must be one of {', '.join(STEP_TYPES)}")
        kind = step["type"]
        known = {"type", "text"} | {"say": set(), "press": {"digit", "retries"},
                                    "zip": {"retries", "on_failure"},
                                    "menu": {"options", "tag", "retries"}}[kind]
        if unknown := set(step) - known:
            raise ValueError(f"step {i}: unknown field(s) {', '.join(sorted(unknown))} "
                             f"for a {kind} step")
        text = step.get("text")
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
            raise ValueError(f"step {i}: text must be 1 to {MAX_TEXT} characters")
        out: dict = {"type": kind, "text": text}
        if kind != "say":
            retries = step.get("retries", 1)
            if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 5:
                raise ValueError(f"step {i}: retries must be a whole number from 0 to 5")
            out["retries"] = retries
        if kind == "press":
            digit = step.get("digit", "1")
            if not isinstance(digit, str) or digit not in DIGITS:
                raise ValueError(f"step {i}: digit must be one key, 0-9, * or #")
            out["digit"] = digit
        elif kind == "zip":
            on_failure = step.get("on_failure", "continue")
            if on_failure not in ("continue", "fallback", "hangup"):
                raise ValueError(f"step {i}: on_failure must be continue, fallback or hangup")
            out["on_failure"] = on_failure
        elif kind == "menu":
            tag, options = step.get("tag"), step.get("options")
            if not isinstance(tag, str) or not TAG_NAME.match(tag):
                raise ValueError(f"step {i}: tag must be a lower-case name (a-z, 0-9, _)")
            if not isinstance(options, dict) or not 0 < len(options) <= 12 or not all(
                    isinstance(k, str) and k in DIGITS and isinstance(v, str)
                    and 0 < len(v) <= 64 for k, v in options.items()):
                raise ValueError(f"step {i}: options must map keys (0-9, *, #) to tag values "
                                 "of 1 to 64 characters")
            out |= {"tag": tag, "options": dict(options)}
        clean.append(out)
    return clean


# -- state -------------------------------------------------------------------------------------


def new_state(plan_id: int, facts: CallFacts, now: dt.datetime) -> dict:
    return {"plan": plan_id, "seq": 0, "step": 0, "tries": 0, "started": _ts(now),
            "facts": {k: v for k, v in vars(facts).items() if k != "tags"},
            "ivr": {"zip": None, "tags": dict(facts.tags), "pressed": None},
            "tier": 0, "tried": [], "offers": [], "skipped": [], "ringing": [],
            "recoveries": 0, "buyer": None, "target": None, "converted": False,
            "revenue": "0", "outcome": None, "done": False}


def facts_of(state: dict) -> CallFacts:
    facts = dict(state["facts"]) | {"tags": dict(state["ivr"]["tags"])}
    if state["ivr"]["zip"]:
        facts["zip"] = state["ivr"]["zip"]
        facts["caller_state"] = zip_state(state["ivr"]["zip"]) or facts.get("caller_state")
    return CallFacts(**facts)


@dataclass
class Context:
    """What a step may consult: the plan, its buyers (id -> contract), the clock, Redis
    (through ``reserve`` and ``release``), and a random source."""

    plan: dict
    buyers: dict[int, dict]
    now: dt.datetime
    reserve: Callable[[list[int]], list[Reservation]]
    release: Callable[..., bool]
    rng: random.Random = field(default_factory=random.Random)


# -- the IVR -----------------------------------------------------------------------------------


def begin(ctx: Context, state: dict) -> list:
    """The verbs of a new call: its IVR's first steps, or straight to the buyers."""
    return run_steps(ctx, state)


def run_steps(ctx: Context, state: dict) -> list:
    steps = ctx.plan.get("ivr") or []
    verbs: list = []
    while state["step"] < len(steps):
        step = steps[state["step"]]
        if step["type"] == "say":
            verbs.append(Say(step["text"]))
            state["step"] += 1
            continue
        return verbs + [ask(step, state["step"])]
    return verbs + route(ctx, state)


def ask(step: dict, index: int) -> Ask:
    digits = ZIP_DIGITS if step["type"] == "zip" else 1
    return Ask(index, step["text"], digits)


def keyed(ctx: Context, state: dict, step_index: int, digits: str | None) -> list:
    """The caller's keys (None or "" when nothing was keyed in time) for step ``step_index``."""
    steps = ctx.plan.get("ivr") or []
    if state["done"] or step_index != state["step"] or step_index >= len(steps):
        return []  # not the step being asked: nothing to do (the caller is elsewhere)
    step = steps[step_index]
    digits = (digits or "").strip()
    answer = _understood(step, digits)
    if answer is None:
        if state["tries"] < step["retries"]:
            state["tries"] += 1
            return [ask(step, step_index)]
        return _gave_up(ctx, state, step)
    if step["type"] == "press":
        state["ivr"]["pressed"] = digits
    elif step["type"] == "zip":
        state["ivr"]["zip"] = answer
    elif step["type"] == "menu":
        state["ivr"]["tags"][step["tag"]] = answer
    state["step"] += 1
    state["tries"] = 0
    return run_steps(ctx, state)


def _understood(step: dict, digits: str):
    kind = step["type"]
    if kind == "press":
        return digits if digits == step["digit"] else None
    if kind == "zip":
        digits = digits.rstrip("#")
        return digits if len(digits) == ZIP_DIGITS and digits.isdigit() else None
    return step["options"].get(digits)  # menu


def _gave_up(ctx: Context, state: dict, step: dict) -> list:
    """A step asked ``retries`` times more and still not answered."""
    if step["type"] == "press":
        return finish(state, "challenge_failed", [Hangup()])
    if step["type"] == "zip" and step["on_failure"] == "hangup":
        return finish(state, "zip_failed", [Hangup()])
    if step["type"] == "zip" and step["on_failure"] == "fallback":
        return fallback(ctx, state)
    state["step"] += 1  # a zip step that continues, or a menu: on without the answer
    state["tries"] = 0
    return run_steps(ctx, state)


# -- offers ------------------------------------------------------------------------------------


def route(ctx: Context, state: dict) -> list:
    """Offer the call to the next eligible buyer(s), tier by tier; else the fallback."""
    tiers = ctx.plan["tiers"]
    facts = facts_of(state)
    tried = set(state["tried"])
    while state["tier"] < len(tiers):
        tier = tiers[state["tier"]]
        order = candidates(tier, ctx.buyers, tried, ctx.rng)
        eligible = []
        for buyer_id in order:
            tried.add(buyer_id)
            state["tried"].append(buyer_id)
            reason = static_refusal(ctx.buyers[buyer_id], facts, ctx.now)
            if reason:
                skip(state, buyer_id, reason)
            else:
                eligible.append(buyer_id)
        if tier.get("mode") == "simultaneous":
            taken = [r for r in ctx.reserve(eligible) if _kept(state, r)] if eligible else []
            if taken:
                return offer(ctx, state, taken)
        else:
            for position, buyer_id in enumerate(eligible):
                got = ctx.reserve([buyer_id])[0]
                if _kept(state, got):
                    # The rest of this tier stays untried: failover reaches them.
                    for later in eligible[position + 1:]:
                        tried.discard(later)
                        state["tried"].remove(later)
                    return offer(ctx, state, [got])
        state["tier"] += 1
    return fallback(ctx, state)


def _kept(state: dict, reservation: Reservation) -> bool:
    if not reservation.ok:
        skip(state, reservation.buyer_id, reservation.reason)
    return reservation.ok


def skip(state: dict, buyer_id: int, reason: str) -> None:
    entry = {"buyer": buyer_id, "reason": reason}
    if entry not in state["skipped"]:
        state["skipped"].append(entry)


def offer(ctx: Context, state: dict, taken: list[Reservation]) -> list:
    legs, ring = [], 0
    state["ringing"] = []
    for got in taken:
        buyer = ctx.buyers[got.buyer_id]
        target = buyer["targets"][got.target]
        address = target.get("number") or target["sip"]
        state["ringing"].append(len(state["offers"]))
        state["offers"].append({"buyer": got.buyer_id, "target": address, "at": _ts(ctx.now),
                                "outcome": None, "ring_seconds": None})
        legs.append(Leg(got.buyer_id, address, buyer.get("whisper"), bool(buyer.get("accept"))))
        ring = max(ring, int(target.get("ring_seconds", 30)))
    return [Offer(tuple(legs), ring)]


def _ringing(state: dict, buyer_id: int) -> dict | None:
    for index in state["ringing"]:
        if state["offers"][index]["buyer"] == buyer_id:
            return state["offers"][index]
    return None


def buyer_answered(ctx: Context, state: dict, buyer_id: int) -> list:
    """A buyer's leg picked up (the whisper's turn). Without ``accept`` the first to answer
    gets the call; with it, the buyer is asked to press 1 (a voicemail never does)."""
    entry = _ringing(state, buyer_id)
    if entry is None or state["done"] or entry["outcome"] in ("declined", "accepted"):
        return [Hangup()]
    entry.setdefault("answered_at", _ts(ctx.now))
    entry["ring_seconds"] = round(entry["answered_at"] - entry["at"], 1)
    buyer = ctx.buyers.get(buyer_id, {})
    if buyer.get("accept"):
        entry["outcome"] = "answered"
        prompt = (buyer.get("whisper") or "A call for you.") + " Press 1 to accept."
        return [Ask(-1, prompt, 1)]
    if state["buyer"] not in (None, buyer_id):
        return [Hangup()]  # another buyer got there first
    entry["outcome"] = "answered"
    state["buyer"], state["target"] = buyer_id, entry["target"]
    return [Say(buyer["whisper"])] if buyer.get("whisper") else []


def buyer_decided(ctx: Context, state: dict, buyer_id: int, digits: str | None) -> list:
    """The buyer's answer to the whisper: 1 takes the call; anything else, or nothing,
    declines it (that buyer's leg is hung up, the others keep ringing)."""
    entry = _ringing(state, buyer_id)
    if entry is None or state["done"]:
        return [Hangup()]
    if entry["outcome"] == "accepted" and state["buyer"] == buyer_id:
        return []  # a redelivery: still taken
    if (digits or "").strip() == "1" and state["buyer"] is None:
        entry["outcome"] = "accepted"
        entry["accepted_at"] = _ts(ctx.now)
        state["buyer"], state["target"] = buyer_id, entry["target"]
        return []
    entry["outcome"] = "declined"
    return [Hangup()]


DIAL_OUTCOMES = {"busy": "busy", "no-answer": "no_answer", "failed": "failed",
                 "canceled": "no_answer", "completed": "no_answer", "answered": "no_answer"}


def dial_ended(ctx: Context, state: dict, status: str | None, duration: int | None,
               caller_gone: bool) -> list:
    """The offer's dial ended (``status`` as Twilio's DialCallStatus, ``duration`` the
    connected leg's seconds): settle each leg with its buyer, then end the call, offer it
    again (recovery) or go on to the next buyer."""
    if not state["ringing"]:
        return [Hangup()] if state["done"] else []
    winner = state["buyer"]
    connected = winner is not None and status in ("completed", "answered")
    for index in state["ringing"]:
        entry = state["offers"][index]
        buyer = ctx.buyers.get(entry["buyer"], {})
        won = connected and entry["buyer"] == winner
        if entry["outcome"] is None:  # never picked up: the dial says why, for one leg
            entry["outcome"] = (DIAL_OUTCOMES.get(status or "", "no_answer")
                                if len(state["ringing"]) == 1 else "no_answer")
        elif entry["outcome"] == "answered" and buyer.get("accept") and not won:
            entry["outcome"] = "declined"  # picked up, never pressed 1 (a voicemail)
        if entry["ring_seconds"] is None:
            entry["ring_seconds"] = round(_ts(ctx.now) - entry["at"], 1)
        converted = False
        if won and buyer:
            delay = (entry.get("accepted_at", 0) - entry.get("answered_at", 0)
                     if entry.get("accepted_at") else 0)
            talk = money.talk_seconds(buyer, duration, delay)
            converted = money.converts(buyer, talk)
            state["converted"] = converted
            state["revenue"] = str(money.revenue(buyer, converted))
            entry["talk_seconds"] = talk
        ctx.release(entry["buyer"], connected=won, converted=converted)
    ringing, state["ringing"] = state["ringing"], []
    if connected:
        recovery = ctx.plan.get("recovery")
        if (recovery and not caller_gone and int(duration or 0) < recovery["min_seconds"]
                and state["recoveries"] < recovery["attempts"] and not state["converted"]):
            state["recoveries"] += 1
            state["buyer"] = state["target"] = None
            state["revenue"] = "0"
            return route(ctx, state)
        return finish(state, "connected", [Hangup()])
    state["buyer"] = state["target"] = None
    if caller_gone:
        return finish(state, "caller_hung_up", [Hangup()])
    # A buyer of a simultaneous offer picked up and declined: Twilio ended the other legs
    # when it answered, so those still unanswered are rung again (each decline is final,
    # so this ends). A leg whose own end was reported (``ended``: carriers that report
    # legs one by one) rang out for real and is not offered again.
    if any(state["offers"][i]["outcome"] == "declined" for i in ringing):
        for index in ringing:
            entry = state["offers"][index]
            if entry["outcome"] == "no_answer" and "ended" not in entry:
                state["tried"].remove(entry["buyer"])
    return route(ctx, state)


def hung_up(ctx: Context, state: dict) -> list:
    """The caller's call ended: a connected buyer's leg is settled (its talk time up to
    now), whatever still rings is freed (a release is counted once)."""
    winner = _ringing(state, state["buyer"]) if state["buyer"] is not None else None
    if winner is not None and winner.get("answered_at"):
        talk = int(_ts(ctx.now) - winner["answered_at"])
        return dial_ended(ctx, state, "completed", talk, caller_gone=True)
    for index in state["ringing"]:
        entry = state["offers"][index]
        entry["outcome"] = entry["outcome"] or "no_answer"
        ctx.release(entry["buyer"], connected=False, converted=False)
    state["ringing"] = []
    if not state["done"]:
        finish(state, "caller_hung_up", [])
    return []


def fallback(ctx: Context, state: dict) -> list:
    plan_fallback = ctx.plan.get("fallback") or {}
    if plan_fallback.get("number"):
        return finish(state, "fallback", [Forward(plan_fallback["number"])])
    return finish(state, "fallback",
                  [Say(plan_fallback.get("message") or DEFAULT_MESSAGE), Hangup()])


def finish(state: dict, outcome: str, verbs: list) -> list:
    state["done"] = True
    state["outcome"] = outcome
    return verbs


def revenue_of(state: dict) -> Decimal:
    return Decimal(state.get("revenue") or "0")


def _ts(moment: dt.datetime) -> float:
    return round(moment.timestamp(), 3)
