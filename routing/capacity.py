"""Buyers' caps and live calls in Redis: one script checks and reserves, one releases.

Every key of a buyer shares its hash tag (``pools.keys.buyer_tag``), so each script runs on
one Redis Cluster slot. The hour, day and month a count belongs to are those of the buyer's
own zone, worked out here and passed to the scripts: a day cap resets at the buyer's
midnight, wherever the servers are.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from redis.exceptions import NoScriptError

from pools.keys import (
    DEFAULT_PREFIX,
    buyer_count_key,
    buyer_duplicate_key,
    buyer_last_offer_key,
    buyer_live_key,
    buyer_target_live_key,
)

PERIODS = ("hour", "day", "month", "total")
METRICS = ("calls", "connections", "conversions", "revenue")
HOLD_SECONDS = 4 * 3600  # a slot whose hang-up never arrives frees itself after this
KEEP_SECONDS = 3600  # a finished period's counts are kept this long past its end


@cache
def script_source(name: str) -> str:
    return (resources.files("routing") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Reservation:
    """What reserve answered: ``target`` (an index into the buyer's targets) when it got a
    slot, else ``reason``; ``again`` when this call already held the slot."""

    buyer_id: int
    target: int | None = None
    reason: str | None = None
    again: bool = False

    @property
    def ok(self) -> bool:
        return self.target is not None


def buckets(zone: str, now: dt.datetime) -> tuple[dict[str, str], list[int]]:
    """The hour, day and month ``now`` falls in, in ``zone`` (and "all" for the total), and
    how many seconds each hour, day and month count is kept: until its end, plus a margin."""
    local = now.astimezone(zoneinfo.ZoneInfo(zone))
    tz = local.tzinfo
    next_hour = (now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1))
    tomorrow = local.date() + dt.timedelta(days=1)
    next_day = dt.datetime.combine(tomorrow, dt.time(0), tz)
    first = local.date().replace(day=1)
    next_month = dt.datetime.combine((first + dt.timedelta(days=32)).replace(day=1),
                                     dt.time(0), tz)
    ends = [next_hour, next_day, next_month]
    ttls = [max(1, int((end - now).total_seconds())) + KEEP_SECONDS for end in ends]
    return {"hour": local.strftime("%Y%m%d%H"), "day": local.strftime("%Y%m%d"),
            "month": local.strftime("%Y%m"), "total": "all"}, ttls


def cents(amount) -> int:
    return int((Decimal(str(amount or 0)) * 100).to_integral_value())


def cap_list(caps: dict) -> str:
    """The buyer's caps as reserve.lua reads them: "day:conversions:50,..." (revenue in
    cents)."""
    out = []
    for metric in METRICS:
        for period, limit in (caps.get(metric) or {}).items():
            value = cents(limit) if metric == "revenue" else int(limit)
            out.append(f"{period}:{metric}:{value}")
    return ",".join(out)


class Capacity:
    """Reserve and release buyers' slots; each call is one EVALSHA, and a batch one pipeline."""

    def __init__(self, redis, prefix: str = DEFAULT_PREFIX, rng: random.Random | None = None):
        self.redis = redis
        self.prefix = prefix
        self.rng = rng or random.Random()
        self._reserve = redis.register_script(script_source("reserve"))
        self._release = redis.register_script(script_source("release"))
        self._usage = redis.register_script(script_source("usage"))

    def buyer_keys(self, buyer_id: int, buyer: dict, caller: str | None, now: dt.datetime
             ) -> tuple[list[str], list[int]]:
        names, ttls = buckets(buyer["timezone"], now)
        p = self.prefix
        return ([buyer_live_key(buyer_id, p)]
                + [buyer_count_key(buyer_id, period, names[period], p) for period in PERIODS]
                + [buyer_last_offer_key(buyer_id, p),
                   buyer_duplicate_key(buyer_id, caller or "anonymous", p)]
                + [buyer_target_live_key(buyer_id, i, p)
                   for i in range(len(buyer["targets"]))]), ttls

    def reserve_args(self, buyer_id: int, buyer: dict, call_id: str, caller: str | None,
                     now: dt.datetime, pick: float | None = None) -> tuple[list[str], list]:
        """reserve.lua's keys and arguments; ``pick`` (in [0, 1)) draws the target, at
        random when not given."""
        keys, ttls = self.buyer_keys(buyer_id, buyer, caller, now)
        caps = buyer.get("caps") or {}
        ring = max(t.get("ring_seconds", 30) for t in buyer["targets"])
        args = [call_id, ms(now), (HOLD_SECONDS + ring) * 1000,
                self.rng.random() if pick is None else pick,
                int(caps.get("concurrency") or 0), int(caps.get("spacing_seconds") or 0) * 1000,
                1 if buyer.get("duplicate") and caller else 0, cents(buyer.get("revenue")),
                cap_list(caps), *ttls]
        for target in buyer["targets"]:
            args += [int(target.get("weight", 1)), int(target.get("concurrency") or 0)]
        return keys, args

    def reserve(self, buyer_id: int, buyer: dict, call_id: str, caller: str | None,
                now: dt.datetime, client=None, pick: float | None = None) -> Reservation:
        """Take a slot of the buyer for the call (one EVALSHA). ``client``: a pipeline to
        queue it on (``queue_reserve``), the caller reads the answer with ``reserved``."""
        if client is not None:
            return self.queue_reserve(client, buyer_id, buyer, call_id, caller, now, pick)
        keys, args = self.reserve_args(buyer_id, buyer, call_id, caller, now, pick)
        return reservation(buyer_id, self._reserve(keys=keys, args=args))

    def queue_reserve(self, pipe, buyer_id: int, buyer: dict, call_id: str,
                      caller: str | None, now: dt.datetime, pick: float | None = None):
        """Queue reserve.lua on ``pipe`` as a bare EVALSHA: redis-py would otherwise ask
        the server whether the script exists before every pipeline, a round trip of its
        own. Execute with ``raise_on_error=False`` and read each answer with ``reserved``,
        which loads the script when the server lost it."""
        keys, args = self.reserve_args(buyer_id, buyer, call_id, caller, now, pick)
        return pipe.evalsha(self._reserve.sha, len(keys), *keys, *args)

    def reserved(self, buyer_id: int, buyer: dict, call_id: str, caller: str | None,
                 now: dt.datetime, raw, pick: float | None = None) -> Reservation:
        """The answer of a queued reserve (``raw``, from the pipeline's results); a script
        the server no longer knows (a restart, SCRIPT FLUSH) is run again, loaded."""
        if isinstance(raw, NoScriptError):
            return self.reserve(buyer_id, buyer, call_id, caller, now, pick=pick)
        if isinstance(raw, Exception):
            raise raw
        return reservation(buyer_id, raw)

    def reserve_many(self, wanted: list[tuple[int, dict]], call_id: str, caller: str | None,
                     now: dt.datetime) -> list[Reservation]:
        """Reserve each of ``wanted`` (buyer id, contract) for the call, in one round trip
        (a simultaneous tier rings them all)."""
        pipe = self.redis.pipeline(transaction=False)
        picks = [self.rng.random() for _ in wanted]
        for (buyer_id, buyer), pick in zip(wanted, picks, strict=True):
            self.queue_reserve(pipe, buyer_id, buyer, call_id, caller, now, pick)
        answers = pipe.execute(raise_on_error=False)
        return [self.reserved(b, buyer, call_id, caller, now, raw, pick)
                for (b, buyer), raw, pick in zip(wanted, answers, picks, strict=True)]

    def release(self, buyer_id: int, buyer: dict, call_id: str, caller: str | None,
                now: dt.datetime, *, connected: bool = False, converted: bool = False) -> bool:
        """Free the call's slot, counting a connection or a conversion; False when it was not
        held (a repeat: nothing counted)."""
        keys, ttls = self.buyer_keys(buyer_id, buyer, caller, now)
        duplicate = buyer.get("duplicate") or {}
        seconds = int(duplicate.get("days", 0)) * 86_400 if caller else 0
        args = [call_id, ms(now), int(connected), int(converted),
                cents(buyer.get("revenue")) if converted else 0, seconds,
                duplicate.get("after", "converted"), *ttls]
        return bool(self._release(keys=keys, args=args))


    def usage(self, buyer_id: int, buyer: dict, now: dt.datetime) -> dict:
        """The buyer's live calls (in all, and per target) and its counts this hour, day
        and month of its zone and in total (revenue in currency units, as a string)."""
        keys, _ = self.buyer_keys(buyer_id, buyer, None, now)
        raw = self._usage(keys=keys, args=[ms(now)])
        counts = {}
        for period, flat in zip(PERIODS, raw[1:5], strict=True):
            pairs = dict(zip(map(_text, flat[::2]), map(int, flat[1::2]), strict=True))
            counts[period] = {m: pairs.get(m, 0) for m in METRICS}
            counts[period]["revenue"] = f"{Decimal(counts[period]['revenue']) / 100:.2f}"
        return {"live": int(raw[0]), "targets": [int(n) for n in raw[5:]], "counts": counts}


def likely_target(buyer: dict, pick: float) -> int | None:
    """The target reserve.lua draws with ``pick`` when every target has room (the same
    walk over the same weights, in the same floating point); None when none can be drawn."""
    open_ = [(i, int(t.get("weight", 1))) for i, t in enumerate(buyer["targets"])]
    open_ = [(i, weight) for i, weight in open_ if weight > 0]
    if not open_:
        return None
    left = pick * sum(weight for _, weight in open_)
    for i, weight in open_:
        left -= weight
        if left < 0:
            return i
    return open_[-1][0]


def reservation(buyer_id: int, raw) -> Reservation:
    ok, value = int(raw[0]), raw[1]
    if ok:
        return Reservation(buyer_id, target=int(value), again=_text(raw[2]) == "held")
    return Reservation(buyer_id, reason=_text(value))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)
