"""Autoscale decisions for a pool: grow to meet an accuracy target, trim before the bill.

Pure: ``decide`` takes the pool's policy, its state (size, the numbers it could release,
visitors refused lately, numbers bought today, the last change) and the accuracy model as a
function of pool size (``attribution.accuracy``'s estimate, in production), and answers
one decision with its reason. Nothing here buys, releases or stores anything: the caller
logs every decision, and applies it only in ``apply`` mode (``propose`` only shows it).

- Growth: when the expected accuracy at the current size is under the target, or visitors
  were refused (the pool ran out) more often than the target allows, by the numbers the
  model says the target needs, at most
  ``step`` at once, never past ``max`` nor past ``daily_limit`` numbers bought per day.
- Trim: in the ``TRIM_DAYS_BEFORE`` days before ``trim_day`` (the day of the month the
  carrier bills), release numbers the pool has not needed: as many as keep the expected
  accuracy at the target plus a margin (``TRIM_HEADROOM``), at most ``step``, never under
  ``min``, and only numbers this service bought.
- ``cooldown_minutes`` between two changes lets the model see the effect of the last one.
- ``account`` (id or name) and ``area_code`` say where ``apply`` mode buys numbers; the
  worker's step (``autoscale_step``) carries decisions out, ``autoscale_policies`` stores
  policies.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

MODES = ("propose", "apply")
TRIM_DAYS_BEFORE = 3
# A trim keeps the expected accuracy this share of the way from the target to 100%: a model
# learned from one window is noisy at its edge, and a pool trimmed to the exact edge buys
# back the next day what it just released.
TRIM_HEADROOM = 0.25
MAX_SIZE = 10_000


class PolicyError(ValueError):
    """A policy that cannot be used; ``fields`` maps each bad setting to its problem."""

    def __init__(self, fields: dict):
        super().__init__("the autoscale policy has invalid settings")
        self.fields = fields


@dataclass(frozen=True)
class Policy:
    enabled: bool = False
    mode: str = "propose"
    min: int = 1
    max: int = 50
    accuracy_target: float = 0.95
    step: int = 5
    cooldown_minutes: int = 60
    trim_day: int | None = None  # 1-28: the day of the month numbers are billed
    daily_limit: int = 10  # numbers bought per day at most: the guard against runaway buying
    account: int | str | None = None  # the carrier account numbers are bought from (apply)
    area_code: str | None = None  # where bought numbers come from (None: any the carrier has)

    @classmethod
    def parse(cls, raw: dict) -> Policy:
        """A policy from its JSON form; PolicyError naming every bad setting."""
        known = {f for f in cls.__dataclass_fields__}
        bad = {name: "unknown setting" for name in raw if name not in known}
        values = {**cls().__dict__, **{k: v for k, v in raw.items() if k in known}}

        def whole(name: str, low: int, high: int) -> None:
            value = values[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                bad[name] = f"a whole number from {low} to {high}"

        if not isinstance(values["enabled"], bool):
            bad["enabled"] = "true or false"
        if values["mode"] not in MODES:
            bad["mode"] = "propose or apply"
        whole("min", 0, MAX_SIZE)
        whole("max", 1, MAX_SIZE)
        whole("step", 1, 500)
        whole("cooldown_minutes", 0, 60 * 24 * 31)
        whole("daily_limit", 0, 1000)
        if values["trim_day"] is not None:
            whole("trim_day", 1, 28)
        account = values["account"]
        if account is not None and (isinstance(account, bool) or not (
                isinstance(account, int) and account > 0
                or isinstance(account, str) and 0 < len(account) <= 100)):
            bad["account"] = "a carrier account's id or name"
        area = values["area_code"]
        if area is not None and not (isinstance(area, str)
                                     and re.fullmatch(r"[0-9]{2,5}", area)):
            bad["area_code"] = "2 to 5 digits"
        target = values["accuracy_target"]
        if not isinstance(target, int | float) or isinstance(target, bool) \
                or not 0.5 <= target < 1:
            bad["accuracy_target"] = "a share from 0.5 to 0.999 (0.95 = 95%)"
        if "min" not in bad and "max" not in bad and values["min"] > values["max"]:
            bad["min"] = "must not be over max"
        if bad:
            raise PolicyError(bad)
        return cls(**values)


@dataclass(frozen=True)
class PoolState:
    size: int  # active numbers
    releasable: int  # of them, numbers this service bought (only those can be released)
    visitors: int  # visitors since the last decision
    refused: int  # of them, visitors given the fallback (the pool had no number free)
    bought_today: int
    last_change: dt.datetime | None
    accuracy: Callable[[int], float]  # expected accuracy at a pool size
    # The fewest numbers reaching an accuracy (None: no size does); None: found by trying
    # each size (``accuracy.Model.smallest`` in production: a bisection).
    smallest: Callable[[float], int | None] | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # grow, trim or hold
    count: int
    reason: str
    expected: float | None  # the expected accuracy at the size the decision leads to


def decide(policy: Policy, state: PoolState, now: dt.datetime) -> Decision:
    """What to do with the pool now, and why."""
    current = state.accuracy(state.size)
    if not policy.enabled:
        return Decision("hold", 0, "autoscale is off", current)
    cooldown = dt.timedelta(minutes=policy.cooldown_minutes)
    if state.last_change is not None and now - state.last_change < cooldown:
        until = (state.last_change + cooldown).isoformat(timespec="minutes")
        return Decision("hold", 0, f"cooling down after the last change, until {until}",
                        current)
    short = state.size < policy.min
    if short or current < policy.accuracy_target or _refusing(policy, state):
        return _grow(policy, state, current, short)
    days_left = days_until(policy.trim_day, now) if policy.trim_day else None
    if days_left is not None and 1 <= days_left <= TRIM_DAYS_BEFORE:
        return _trim(policy, state, current, days_left)
    return Decision("hold", 0, f"expected accuracy {current:.1%} meets the target "
                               f"{policy.accuracy_target:.1%}", current)


def _refusing(policy: Policy, state: PoolState) -> bool:
    """More visitors refused than the target allows (the model underestimates the load).
    A few refusals are within the target: growing on any would undo every trim."""
    return state.refused > 0 and state.refused > state.visitors * (1 - policy.accuracy_target)


def _grow(policy: Policy, state: PoolState, current: float, short: bool) -> Decision:
    target = policy.accuracy_target
    why = (f"{state.size} numbers, under the minimum {policy.min}" if short else
           f"expected accuracy {current:.1%} under the target {target:.1%}"
           if current < target else
           f"{state.refused} of {state.visitors} visitors got the fallback (pool ran out)")
    room = policy.max - state.size
    budget = policy.daily_limit - state.bought_today
    if room <= 0:
        return Decision("hold", 0, f"{why}, but the pool is at its maximum {policy.max}",
                        current)
    if budget <= 0:
        return Decision("hold", 0, f"{why}, but {state.bought_today} numbers were bought "
                                   f"today (daily limit {policy.daily_limit})", current)
    needed = _needed(policy, state, room)
    if not short and not _refusing(policy, state) and needed == room:
        ceiling = state.accuracy(policy.max)
        if ceiling < target and ceiling - current < 0.001:
            return Decision("hold", 0, f"{why}, but even {policy.max} numbers would credit "
                                       f"only {ceiling:.1%}: more numbers would not help",
                            current)
    if short:
        needed = max(needed, policy.min - state.size)
    count = max(1, min(needed, policy.step, room, budget))
    limits = []
    if count < needed:
        limits.append(f"{needed} needed, {count} now (step {policy.step}, room {room}, "
                      f"today's budget {budget})")
    after = state.accuracy(state.size + count)
    reason = f"{why}: grow by {count} to {state.size + count} (expected {after:.1%})"
    return Decision("grow", count, "; ".join([reason, *limits]), after)


def _needed(policy: Policy, state: PoolState, room: int) -> int:
    """Numbers the model says the target needs (all the room when it cannot be met)."""
    if state.smallest is not None:
        best = state.smallest(policy.accuracy_target)
        if best is None:
            return room
        if best > state.size:
            return min(room, best - state.size)
        # The model's smallest size is not above the current one (it is not monotone call
        # by call): try each size instead.
    for extra in range(1, room + 1):
        if state.accuracy(state.size + extra) >= policy.accuracy_target:
            return extra
    return room


def trim_floor(policy: Policy) -> float:
    """The expected accuracy a trim keeps: the target and a margin (``TRIM_HEADROOM``)."""
    return policy.accuracy_target + (1 - policy.accuracy_target) * TRIM_HEADROOM


def _trim(policy: Policy, state: PoolState, current: float, days_left: int) -> Decision:
    most = min(policy.step, state.releasable, state.size - policy.min)
    floor = trim_floor(policy)
    count = 0
    for k in range(1, most + 1):
        if state.accuracy(state.size - k) < floor:
            break
        count = k
    if count == 0:
        return Decision("hold", 0, f"{days_left} days before billing: every number is needed "
                                   f"for the target {policy.accuracy_target:.1%} (and its "
                                   f"margin, {floor:.1%})", current)
    after = state.accuracy(state.size - count)
    return Decision("trim", count, f"{days_left} days before billing: {count} numbers unused "
                                   f"by the target {policy.accuracy_target:.1%} (and its "
                                   f"margin, {floor:.1%}); expected {after:.1%} at "
                                   f"{state.size - count}", after)


def days_until(day: int, now: dt.datetime) -> int:
    """Whole days from ``now``'s date to the next ``day`` of a month (0 on the day)."""
    today = now.date()
    month = today.replace(day=day)
    if month < today:
        nxt = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=day)
        return (nxt - today).days
    return (month - today).days
