"""The pre-ring check: the signals known before a call rings, its score and what the
site's policy does with it (none, flag, challenge, block).

No SQL: the block list, policies and numbers' owners come from the cached map
(``attribution.fraud.directory``). At most one Redis round trip: one script records the
call in the caller's recent history and answers it (``lua/caller_calls.lua``); a caller
without a valid number has no history and costs none. Redis away: those two signals are
unknown (None), never a reason to refuse a caller.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from importlib import resources

from redis.exceptions import RedisError

from attribution.fraud import signals as sig
from attribution.fraud.directory import FraudDirectory
from attribution.fraud.lists import match
from attribution.fraud.policy import action_for, effective
from attribution.fraud.score import score
from pools.keys import DEFAULT_PREFIX, fraud_caller_calls_key
from pools.phones import InvalidNumber, normalize

log = logging.getLogger(__name__)
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def script_source(name: str) -> str:
    return (resources.files("attribution.fraud") / "lua" / f"{name}.lua").read_text(
        encoding="utf-8")


@dataclass(frozen=True)
class Screening:
    """The verdict before ringing; ``facts()`` rides on the call event into its row."""

    signals: list[sig.Signal]
    score: int
    contributions: list[dict]
    action: str
    policy: dict
    site_id: int | None

    def facts(self) -> dict:
        return {"signals": [s.as_dict() for s in self.signals], "action": self.action,
                "policy": self.policy, "pre_ring_score": self.score}


def e164(raw: str | None) -> str | None:
    try:
        return normalize(raw or "", "US")
    except InvalidNumber:
        return None


class Screen:
    def __init__(self, redis, directory: FraudDirectory, prefix: str = DEFAULT_PREFIX):
        self.redis = redis
        self.directory = directory
        self.prefix = prefix
        self._caller_calls = redis.register_script(script_source("caller_calls"))

    def check(self, provider: str, call_id: str, caller_raw: str | None, dialled: str | None,
              payload: dict, now: dt.datetime) -> Screening:
        fraud = self.directory.current()
        owner = fraud.owners.get(e164(dialled) or "") or {}
        site_id = owner.get("site_id")
        policy = effective(fraud.policies.get(site_id))
        caller = e164(caller_raw)
        burst, publishers = self.history(caller, owner.get("publisher"), f"{provider}:{call_id}",
                                         now, policy)
        found = [
            sig.listed(match(caller, fraud.blocks, site_id, now)),
            sig.stir_shaken(sig.attestation_of(provider, payload)),
            sig.caller_id_invalid(caller_raw, policy["expected_countries"]),
            sig.repeat_burst(burst, policy["burst_calls"], policy["burst_minutes"]),
            sig.cross_publisher(publishers, policy["cross_days"]),
        ]
        points, parts = score(found)
        action = "block" if found[0].fired else action_for(points, policy, pre_ring=True)
        return Screening(found, points, parts, action, policy, site_id)

    def history(self, caller: str | None, publisher: str | None, call_ref: str,
                now: dt.datetime, policy: dict) -> tuple[int | None, int | None]:
        """(calls within the burst window, other publishers reached within the cross
        window) from one script; (None, None) without a valid caller or Redis."""
        if caller is None:
            return None, None
        now_ms = int(now.timestamp() * 1000)
        burst_ms = policy["burst_minutes"] * MINUTE_MS
        kept_ms = max(policy["cross_days"] * DAY_MS, burst_ms)
        member = f"{publisher or ''}|{call_ref}"
        try:
            burst, members = self._caller_calls(
                keys=[fraud_caller_calls_key(caller, self.prefix)],
                args=[now_ms, member, burst_ms, kept_ms])
        except RedisError:
            log.warning("Redis unavailable: repeat and cross-publisher signals unknown")
            return None, None
        seen = {(m.decode() if isinstance(m, bytes) else m).rpartition("|")[0] for m in members}
        others = {p for p in seen if p and p != (publisher or "")}
        # Another publisher counts whether this number is a publisher's or the network's.
        return int(burst), len(others)
