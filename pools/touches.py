"""Touches: a visitor tapped a tel: link showing the number their session holds, or copied
it. The snippet reports each one (``POST /v1/sessions/<id>/touch``); matching reads them as
direct evidence of which session dialled.

One script call per pool records a touch, in the same round trip that checks the session
still holds the number (``lua/touch.lua``). Each number keeps its latest touches, each
(session, kind) once, bounded in count and age. ``PoolService.touch`` and
``PoolService.touches`` are the doors; the functions here do the work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from pools import keys as k
from pools.errors import PoolNotLoaded, UnexpectedReply, WrongSite
from pools.scripts import script_source

if TYPE_CHECKING:
    from pools.leases import PoolService

KINDS = ("click", "copy")
MAX_TOUCHES = 20  # per number: each (session, kind) once, so at least ten sessions' worth
# How long a touch is kept: a call hours after its visit can still weigh the visit's touch.
# A pool's attribution window lives in SQL, which this path never reads.
KEEP_MS = 24 * 3_600_000
TOUCH_LIMIT = 20  # touches recorded per session per window (a page cannot flood the list)
TOUCH_WINDOW_MS = 60_000

# Outcomes of PoolService.touch, one per pool of the session.
RECORDED, NOT_HELD, OTHER_NUMBER, LIMITED = "recorded", "not_held", "other_number", "limited"
_OUTCOMES = {0: RECORDED, 1: NOT_HELD, 2: OTHER_NUMBER, 3: LIMITED}


def register(redis):
    """The touch script, registered on ``redis`` (one EVALSHA per call)."""
    return redis.register_script(script_source("touch"))


def shown_digits(number: str) -> str:
    """The digits of a number as a page shows it ("(800) 555-0123" -> "8005550123")."""
    return "".join(ch for ch in number if "0" <= ch <= "9")


def touch(svc: PoolService, pool_ids: list[int], session_id: str, site_key: str, number: str,
          kind: str, now_ms: int, *, limit: int = TOUCH_LIMIT,
          window_ms: int = TOUCH_WINDOW_MS, keep: int = MAX_TOUCHES,
          keep_ms: int = KEEP_MS) -> list[str | PoolNotLoaded | WrongSite]:
    """Record a touch of ``number`` (as shown: any layout) in each of ``pool_ids`` where the
    session holds it; one round trip for all pools. Each item is RECORDED, NOT_HELD,
    OTHER_NUMBER or LIMITED (nothing stored), or PoolNotLoaded / WrongSite."""
    if kind not in KINDS:
        raise ValueError(f"a touch is one of {', '.join(KINDS)}, not {kind!r}")
    shown = shown_digits(number)
    calls = [(svc.keys(pid).state() + [k.touches_key(pid, svc.prefix),
                                       k.session_touches_key(pid, session_id, svc.prefix)],
              [session_id, now_ms, site_key, shown, kind, limit, window_ms, keep, keep_ms])
             for pid in pool_ids]
    if not calls:
        return []
    if len(calls) == 1:
        replies = [svc.guard.call(svc.direct.run, svc.touch_script, *calls[0])]
    else:
        replies = svc.guard.call(svc._pipeline, svc.touch_script, calls)
    return [_outcome(pid, reply) for pid, reply in zip(pool_ids, replies, strict=True)]


def touches(svc: PoolService, pool_id: int, number: str,
            since_ms: int) -> list[tuple[str, str, int]]:
    """(session id, kind, at ms) of each touch of ``number`` (E.164, as stored) at or after
    ``since_ms``, oldest first. Raises PoolUnavailable when Redis is down."""
    raw = svc.guard.call(svc.redis.hget, k.touches_key(pool_id, svc.prefix), number)
    if not raw:
        return []
    found = [(str(s), str(kind), int(at)) for s, kind, at in orjson.loads(raw)]
    return sorted((t for t in found if t[2] >= since_ms), key=lambda t: t[2])


def _outcome(pool_id: int, reply) -> str | PoolNotLoaded | WrongSite:
    code = int(reply[0])
    if code in (-1, -2):
        return (PoolNotLoaded if code == -1 else WrongSite)(pool_id)
    if code not in _OUTCOMES:
        raise UnexpectedReply(pool_id)
    return _OUTCOMES[code]
