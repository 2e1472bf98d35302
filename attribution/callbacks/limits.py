"""The abuse limits on web callback requests, checked and recorded in one Redis round trip.

The defaults are those documented by a long-running click-to-call product: per visitor at
most 7 requests in 15 minutes, 9 in an hour and 15 in a day to one number; a visitor asking
for a 3rd different number in an hour, or a 4th in a day, is refused and flagged (every
request refused for a day); and per site a cap on callbacks in progress. A visitor is the
hash of their IP address and user agent (``requests.client_hash``): the snippet's own ids
are the page's to choose, an address is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from attribution.callbacks import keys

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000


@dataclass(frozen=True)
class Limits:
    per_number: tuple[tuple[int, int], ...] = ((7, 15 * MINUTE_MS), (9, HOUR_MS), (15, DAY_MS))
    distinct_numbers: tuple[tuple[int, int], ...] = ((3, HOUR_MS), (4, DAY_MS))
    flag_ms: int = DAY_MS
    site_in_progress: int = 50  # callbacks scheduled or being called, per site (0 = no cap)


@dataclass(frozen=True)
class Verdict:
    """What the script answered: ``admitted``, else ``reason`` (to_number, numbers,
    flagged, site_busy) and its ``detail`` (the window in ms, the flag, the cap)."""

    reason: str | None = None
    detail: str = ""
    flagged: bool = False

    @property
    def admitted(self) -> bool:
        return self.reason is None


REASONS = {1: "to_number", 2: "numbers", 3: "flagged", 4: "site_busy"}


@cache
def script_source(name: str) -> str:
    return (resources.files("attribution.callbacks") / "lua" / f"{name}.lua").read_text(
        encoding="utf-8")


def _spec(windows) -> str:
    return ",".join(f"{limit}:{span}" for limit, span in windows)


class CallbackLimits:
    """Runs request.lua to admit a request, release.lua to end its place in the site's cap."""

    def __init__(self, redis, prefix: str = keys.DEFAULT_PREFIX, limits: Limits = Limits()):
        self.redis = redis
        self.prefix = prefix
        self.limits = limits
        self.request_script = redis.register_script(script_source("request"))
        self.release_script = redis.register_script(script_source("release"))

    def admit(self, site_id: int, client: str, phone: str, callback_id: str, now_ms: int,
              lapse_ms: int) -> Verdict:
        p = self.prefix
        code, detail = self.request_script(
            keys=[keys.to_number_key(site_id, client, phone, p),
                  keys.numbers_key(site_id, client, p), keys.flagged_key(site_id, client, p),
                  keys.open_key(site_id, p)],
            args=[now_ms, callback_id, phone, _spec(self.limits.per_number),
                  _spec(self.limits.distinct_numbers), self.limits.flag_ms,
                  self.limits.site_in_progress, lapse_ms])
        code = int(code)
        detail = detail.decode() if isinstance(detail, bytes) else str(detail)
        if code == 0:
            return Verdict()
        return Verdict(REASONS[code], detail, flagged=code in (2, 3))

    def release(self, site_id: int, callback_id: str) -> None:
        """The callback ended (completed, failed, canceled): it no longer counts."""
        self.release_script(keys=[keys.open_key(site_id, self.prefix)], args=[callback_id])
