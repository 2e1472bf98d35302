"""Routed calls: each carrier webhook of a call is one turn of its plan (``routing.flow``).

The call's state lives in Redis (``pools.keys.routed_call_key``), so the turns of one call
may land on different app servers and survive a restart between two. Turns that move the
plan on (the IVR's answers, a dial's end) carry the sequence number of the turn they answer:
the first delivery claims it, and a redelivery gets the very answer the first one gave.
The buyers' legs report concurrently (whispers, accept keys): those update the state with
an optimistic transaction, each keyed on its leg, so a repeat changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError, WatchError
from sqlalchemy import select

from pools.keys import DEFAULT_PREFIX, routed_call_key, routed_turn_key
from pools.phones import InvalidNumber, normalize
from routing import flow, money
from routing.capacity import Capacity, Reservation, likely_target
from routing.directory import RoutingDirectory
from routing.eligibility import CallFacts
from routing.models import CallRouting

log = logging.getLogger(__name__)
STATE_SECONDS = 6 * 3600  # a call's state outlives any call
REPLAY_WAIT_SECONDS = 3.0  # a redelivery waits this long for the first delivery's answer
Render = Callable[[list, int], str]  # verbs, the next turn's number -> the carrier's answer


@dataclass
class Turn:
    """A turn's outcome: the carrier's answer, and the state after it (None: a replay)."""

    answer: str
    state: dict | None = None


# The stored call's fields that buyers' filters test (read by the webhook as it stores it).
CALL_FACTS = ("caller_region", "source", "medium", "campaign", "keyword", "publisher",
              "repeat_caller", "from_number", "from_valid", "risk_score")


def facts_for(call: dict | None, caller: str | None, region: str | None) -> CallFacts:
    """What buyers' filters may test, from the stored call's ``CALL_FACTS`` (None when SQL
    was down: then only what the carrier said)."""
    if call and "from_valid" in call:  # the caller's number, as the stored call read it
        number = call["from_number"] if call["from_valid"] else None
    else:
        try:
            number = normalize(caller or "", "US")
        except InvalidNumber:
            number = None
    area = number[2:5] if number and number.startswith("+1") else None
    call = call or {}
    return CallFacts(caller=number, caller_state=call.get("caller_region") or region,
                     caller_area_code=area, source=call.get("source"),
                     medium=call.get("medium"), campaign=call.get("campaign"),
                     keyword=call.get("keyword"), publisher=call.get("publisher"),
                     repeat_caller=bool(call.get("repeat_caller")),
                     risk_score=call.get("risk_score"))


class RoutedCalls:
    """Runs routed calls' turns against Redis; carrier-neutral (the views render verbs)."""

    def __init__(self, redis, directory: RoutingDirectory, prefix: str = DEFAULT_PREFIX,
                 capacity: Capacity | None = None, clock=None):
        self.redis = redis
        self.directory = directory
        self.prefix = prefix
        self.capacity = capacity or Capacity(redis, prefix)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    # -- the turns ---------------------------------------------------------------------------

    def start(self, provider: str, call_id: str, plan_id: int, facts: CallFacts,
              render: Render, at: dt.datetime | None = None) -> Turn:
        """A new call to a routed number: its first verbs, in one Redis round trip (the
        state written, with the reservation of the buyers a plan without an IVR offers the
        call to at once; a second only when one of them had no room after all). A
        redelivery replays the first answer. ``at`` (here and in every turn) is when the
        carrier says the event happened: talk and ring times then follow the carrier's
        clock, whenever its events arrive."""
        routing = self.directory.current()
        now = at or self.clock()
        key = routed_call_key(provider, call_id, self.prefix)
        # The turn is worked out on credit: each buyer it asks for is taken to have room
        # (with the target reserve.lua draws for the same pick), and the reservations go
        # in one pipeline with the state's claim. Reserving is idempotent per call, so the
        # copy of a redelivery only finds the slot the first one holds.
        buyers = self._buyers(routing, {"plan": plan_id})
        credit = Credit(self.capacity.rng, buyers)
        state, answer = self._first_turn(routing, provider, call_id, plan_id, facts, render,
                                         now, credit.reserve)
        routed_id, caller = f"{provider}:{call_id}", state["facts"].get("caller")
        got: dict[int, Reservation] = {}
        if not credit.asked:  # an IVR first: the claim alone
            claimed = self.redis.set(key, json.dumps(state), nx=True, ex=STATE_SECONDS)
        else:
            pipe = self.redis.pipeline(transaction=False)
            for buyer_id, pick in credit.asked:
                self.capacity.queue_reserve(pipe, buyer_id, buyers[buyer_id], routed_id,
                                            caller, now, pick)
            pipe.set(key, json.dumps(state), nx=True, ex=STATE_SECONDS)
            *raw, claimed = pipe.execute(raise_on_error=False)
            if isinstance(claimed, Exception):
                raise claimed
            got = {b: self.capacity.reserved(b, buyers[b], routed_id, caller, now, r, pick)
                   for (b, pick), r in zip(credit.asked, raw, strict=True)}
        if not claimed:
            # Delivered before: what was answered then (and free anything this copy took).
            earlier = json.loads(self.redis.get(key) or "{}")
            kept = {earlier["offers"][i]["buyer"] for i in earlier.get("ringing", [])}
            self._release(routing, provider, call_id, state, now,
                          [b for b, r in got.items() if r.ok and not r.again and b not in kept])
            return Turn(earlier.get("answers", {}).get("0", answer))
        if all(credit.kept(b, r) for b, r in got.items()):
            return Turn(answer, state)
        # A buyer had no room after all (a cap, its concurrency, a full target): the turn
        # again with what Redis answered, and the state written over the one on credit.
        state, answer = self._first_turn(routing, provider, call_id, plan_id, facts, render,
                                         now, known=got)
        ringing = {state["offers"][i]["buyer"] for i in state["ringing"]}
        self._release(routing, provider, call_id, state, now,
                      [b for b, r in got.items() if r.ok and b not in ringing])
        self.redis.set(key, json.dumps(state), ex=STATE_SECONDS)
        return Turn(answer, state)

    def _first_turn(self, routing, provider, call_id, plan_id, facts, render, now,
                    reserve=None, known=None) -> tuple[dict, str]:
        """A new call's state and first answer; buyers are reserved through ``reserve``
        (else in Redis, except those already answered in ``known``)."""
        state = flow.new_state(plan_id, facts, now)
        ctx = self._context(routing, provider, call_id, state, now, known=known)
        if reserve is not None:
            ctx.reserve = reserve
        verbs = flow.begin(ctx, state)
        state["seq"] = 1
        answer = render(verbs, 1)
        state["answers"] = {"0": answer}
        return state, answer

    def keyed(self, provider: str, call_id: str, seq: int, step: int, digits: str | None,
              render: Render, at: dt.datetime | None = None) -> Turn:
        """The caller's keys for IVR step ``step``."""
        return self._advance(provider, call_id, seq, render,
                             lambda ctx, state: flow.keyed(ctx, state, step, digits), at)

    def dial_ended(self, provider: str, call_id: str, seq: int, status: str | None,
                   duration: int | None, caller_gone: bool, render: Render,
                   at: dt.datetime | None = None) -> Turn:
        return self._advance(provider, call_id, seq, render, lambda ctx, state: flow.dial_ended(
            ctx, state, status, duration, caller_gone), at)

    def buyer_answered(self, provider: str, call_id: str, seq: int, buyer_id: int,
                       render: Render, at: dt.datetime | None = None) -> Turn:
        return self._leg(provider, call_id, seq, f"{seq}:answer:{buyer_id}", render,
                         lambda ctx, state: flow.buyer_answered(ctx, state, buyer_id), at)

    def buyer_decided(self, provider: str, call_id: str, seq: int, buyer_id: int,
                      digits: str | None, render: Render, at: dt.datetime | None = None
                      ) -> Turn:
        return self._leg(provider, call_id, seq, f"{seq}:decide:{buyer_id}", render,
                         lambda ctx, state: flow.buyer_decided(ctx, state, buyer_id, digits),
                         at)

    def note_leg(self, provider: str, call_id: str, seq: int, buyer_id: int,
                 control_id: str) -> None:
        """Remember the carrier's id of a buyer's leg (to hang it up when another wins)."""
        def note(_ctx, state):
            state.setdefault("legs", {})[str(buyer_id)] = control_id
            return []
        self._leg(provider, call_id, seq, f"{seq}:leg:{buyer_id}", lambda v, t: "", note)

    def leg_ended(self, provider: str, call_id: str, seq: int, buyer_id: int,
                  status: str, render: Render, at: dt.datetime | None = None,
                  from_our_side: bool = False) -> Turn | None:
        """One buyer leg of offer ``seq`` ended (carriers that report legs one by one, like
        Telnyx): the offer is settled, as ``dial_ended``, once its winner's leg ends or
        every leg has ended unanswered; None while other legs still ring.

        ``from_our_side``: the leg was ended by the calling side, not by the buyer (a
        hang-up we sent, or the carrier cancelling it because the caller left); the
        carrier's event reads the same either way. The call's state tells them apart: we
        hang up only declined legs and the losers of a decided offer, so such a leg of an
        undecided offer, or the winner's, means the caller is gone. That is settled as the
        caller's own hang-up (``hung_up``), whichever of the two events comes first."""
        ends: dict = {}

        def note(ctx, state):
            entry = flow._ringing(state, buyer_id)
            if entry is not None:
                entry.setdefault("ended", status)
            ringing = [state["offers"][i] for i in state["ringing"]]
            ends["caller_gone"] = (from_our_side and entry is not None
                                   and entry["outcome"] != "declined"
                                   and state["buyer"] in (None, buyer_id))
            ends["settle"] = bool(ringing) and (
                state["buyer"] == buyer_id or all("ended" in e for e in ringing))
            ends["duration"] = (int(_now_ts(ctx) - entry["answered_at"])
                                if entry is not None and entry.get("answered_at") else 0)
            return []

        self._leg(provider, call_id, seq, f"{seq}:end:{buyer_id}", render, note, at)
        if ends.get("caller_gone"):
            # Nothing more is said or dialled: the caller's leg is gone.
            return Turn(render([], seq), self.hung_up(provider, call_id, at))
        if not ends.get("settle"):
            return None
        won = self.state(provider, call_id) or {}
        status = "completed" if won.get("buyer") == buyer_id else status
        return self.dial_ended(provider, call_id, seq, status, ends["duration"], False,
                               render, at)

    def hung_up(self, provider: str, call_id: str, at: dt.datetime | None = None
                ) -> dict | None:
        """The caller is gone: a connected buyer's leg is settled and every slot still held
        for the call freed, once (a repeated hang-up changes nothing). None: not routed."""
        if self.redis.exists(routed_call_key(provider, call_id, self.prefix)) == 0:
            return None
        turn = self._leg(provider, call_id, 0, "hangup", lambda _verbs, _turn: "",
                         lambda ctx, state: flow.hung_up(ctx, state), at)
        return turn.state or self.state(provider, call_id)

    def state(self, provider: str, call_id: str) -> dict | None:
        raw = self.redis.get(routed_call_key(provider, call_id, self.prefix))
        return None if raw is None else json.loads(raw)

    # -- the machinery -------------------------------------------------------------------------

    def _advance(self, provider, call_id, seq, render, step, at=None) -> Turn:
        key = routed_call_key(provider, call_id, self.prefix)
        claim = routed_turn_key(provider, call_id, seq, self.prefix)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(claim, "1", nx=True, ex=STATE_SECONDS)
        pipe.get(key)
        claimed, raw = pipe.execute()
        if raw is None:
            return Turn(render([flow.Hangup()], seq))  # unknown or long gone: end it
        state = json.loads(raw)
        if not claimed or state["seq"] != seq:
            return Turn(self._replay(key, str(seq), render, seq))
        routing = self.directory.current()
        now = at or self.clock()
        try:
            verbs = step(self._context(routing, provider, call_id, state, now), state)
        except Exception:
            self.redis.delete(claim)  # not done: the carrier's retry may try again
            raise
        if not verbs and not state["done"]:
            verbs = [flow.Hangup()]  # nothing left to do: never dead air
        state["seq"] = seq + 1
        answer = render(verbs, seq + 1)
        answers = state.setdefault("answers", {})
        answers[str(seq)] = answer
        for old in [k for k in answers if k.isdigit() and int(k) < seq - 2]:
            del answers[old]  # a redelivery comes within seconds: keep the last few
        self.redis.set(key, json.dumps(state), ex=STATE_SECONDS)
        return Turn(answer, state)

    def _leg(self, provider, call_id, seq, turn_key, render, step, at=None) -> Turn:
        key = routed_call_key(provider, call_id, self.prefix)
        for _ in range(20):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return Turn(render([flow.Hangup()], seq))
                    state = json.loads(raw)
                    answers = state.setdefault("answers", {})
                    if turn_key in answers:
                        return Turn(answers[turn_key])
                    routing = self.directory.current()
                    now = at or self.clock()
                    verbs = step(self._context(routing, provider, call_id, state, now), state)
                    answer = render(verbs, seq)
                    answers[turn_key] = answer
                    pipe.multi()
                    pipe.set(key, json.dumps(state), ex=STATE_SECONDS)
                    pipe.execute()
                    return Turn(answer, state)
                except WatchError:
                    continue  # another leg's turn changed the state: read it again
        raise RedisError(f"routed call {call_id}: state kept changing")

    def _replay(self, key: str, turn: str, render, seq) -> str:
        """The answer the first delivery of ``turn`` gave (waiting for it if still busy)."""
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        while True:
            raw = self.redis.get(key)
            answers = json.loads(raw).get("answers", {}) if raw else {}
            if turn in answers:
                return answers[turn]
            if time.monotonic() > deadline:
                return render([], seq)  # out of order and unknown: change nothing
            time.sleep(0.05)

    @staticmethod
    def _buyers(routing, state) -> dict[int, dict]:
        """The buyers of the call's plan (id -> contract)."""
        plan = routing.plans.get(state["plan"]) or {"tiers": []}
        return {b: routing.buyers[b] for tier in plan["tiers"] for b in tier["buyers"]
                if b in routing.buyers}

    def _context(self, routing, provider, call_id, state, now, known=None) -> flow.Context:
        plan = routing.plans.get(state["plan"]) or {"tiers": [], "fallback": {}}
        buyers = self._buyers(routing, state)
        caller = state["facts"].get("caller")
        routed_id = f"{provider}:{call_id}"
        known = known or {}

        def reserve(ids: list[int]):
            asked = [b for b in ids if b not in known]
            if len(asked) == 1:
                fresh = [self.capacity.reserve(asked[0], buyers[asked[0]], routed_id, caller,
                                               now)]
            elif asked:
                fresh = self.capacity.reserve_many([(b, buyers[b]) for b in asked], routed_id,
                                                   caller, now)
            else:
                fresh = []
            answers = dict(zip(asked, fresh, strict=True))
            return [known[b] if b in known else answers[b] for b in ids]

        def release(buyer_id: int, *, connected: bool, converted: bool) -> bool:
            buyer = buyers.get(buyer_id) or routing.buyers.get(buyer_id)
            if buyer is None:
                return False
            return self.capacity.release(buyer_id, buyer, routed_id, caller, now,
                                         connected=connected, converted=converted)

        # The same draw on every delivery of a turn: a repeat reserves the same buyers.
        rng = random.Random(f"{routed_id}:{state['seq']}:{state['recoveries']}")
        return flow.Context(plan, buyers, now, reserve, release, rng)

    def _release(self, routing, provider, call_id, state, now, buyer_ids) -> None:
        """Free slots this turn took but does not offer (nothing is counted)."""
        if buyer_ids:
            ctx = self._context(routing, provider, call_id, state, now)
            for buyer_id in buyer_ids:
                ctx.release(buyer_id, connected=False, converted=False)


class Credit:
    """A new call's first turn worked out before Redis answers: every buyer asked for is
    taken to have room, with the target reserve.lua draws for the same pick when all of the
    buyer's targets have room. ``asked`` lists (buyer, pick) to reserve for real, and
    ``kept`` tells whether Redis answered as assumed."""

    def __init__(self, rng: random.Random, buyers: dict[int, dict]):
        self.rng = rng
        self.buyers = buyers
        self.asked: list[tuple[int, float]] = []
        self.assumed: dict[int, Reservation] = {}

    def reserve(self, ids: list[int]) -> list[Reservation]:
        out = []
        for buyer_id in ids:
            if buyer_id not in self.assumed:
                pick = self.rng.random()
                self.asked.append((buyer_id, pick))
                target = likely_target(self.buyers[buyer_id], pick)
                self.assumed[buyer_id] = (Reservation(buyer_id, target=target)
                                          if target is not None else
                                          Reservation(buyer_id, reason="concurrency:target"))
            out.append(self.assumed[buyer_id])
        return out

    def kept(self, buyer_id: int, got: Reservation) -> bool:
        assumed = self.assumed[buyer_id]
        return (got.target, got.reason) == (assumed.target, assumed.reason)


def _now_ts(ctx: flow.Context) -> float:
    return ctx.now.timestamp()


# -- the log in SQL ---------------------------------------------------------------------------


def public_log(state: dict) -> dict:
    """The state as the call's ``routing`` shows it."""
    offers = [{k: o.get(k) for k in ("buyer", "target", "outcome", "ring_seconds")}
              | {"at": dt.datetime.fromtimestamp(o["at"], dt.UTC).isoformat()}
              for o in state["offers"]]
    return {"plan": state["plan"], "ivr": state["ivr"], "offers": offers,
            "skipped": state["skipped"], "buyer": state["buyer"] if state["done"] else None,
            "converted": state["converted"], "revenue": state["revenue"],
            "outcome": state["outcome"]}


def record(db, provider: str, call_id: str, state: dict) -> CallRouting:
    """Write (or update) the call's routing log; the caller commits."""
    row = db.scalar(select(CallRouting).where(CallRouting.provider == provider,
                                              CallRouting.provider_call_id == call_id))
    if row is None:
        row = CallRouting(provider=provider, provider_call_id=call_id)
        db.add(row)
    log_ = public_log(state)
    was_converted = bool(row.converted)
    row.plan_id = state["plan"]
    row.ivr, row.offers, row.skipped = log_["ivr"], log_["offers"], log_["skipped"]
    row.buyer_id = log_["buyer"]
    row.target = state["target"] if state["done"] else None
    row.converted = bool(state["converted"])
    row.revenue = flow.revenue_of(state)
    row.outcome = state["outcome"]
    db.flush()
    if row.converted != was_converted:
        money.settle(db, provider, call_id, row.converted)  # rules on buyer conversions
    if state["done"] and state["buyer"] is not None:  # issue 16: the buyer's threshold
        from routing.fraud import buyer_talk

        buyer_talk(db, provider, call_id, state)
    return row


def routing_of(db, provider: str, call_id: str) -> tuple[dict, str | None] | None:
    """A call's routing log as ``GET /v1/calls/<id>`` shows it, with the publisher its plan
    belongs to (who else may see it); None for a call that was not routed."""
    from routing.models import RoutingPlan

    row = db.scalar(select(CallRouting).where(CallRouting.provider == provider,
                                              CallRouting.provider_call_id == call_id))
    if row is None:
        return None
    plan = db.get(RoutingPlan, row.plan_id) if row.plan_id else None
    return {"plan": row.plan_id, "ivr": row.ivr, "offers": row.offers, "skipped": row.skipped,
            "buyer": row.buyer_id, "target": row.target, "converted": row.converted,
            "revenue": f"{row.revenue:.2f}", "outcome": row.outcome}, (
        plan.publisher if plan else None)
