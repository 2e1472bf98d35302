"""What matching learns from a pool's or site's own calls, cached in the process.

Learning reads SQL, so it is done once a minute at most: an entry is reused while less than
``CACHE_SECONDS`` old by the process's clock and by the calls' own, so a simulation on a
virtual clock relearns as its calls' time moves on, and calls out of order (an import, a
replay) reuse what was learned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

CACHE_SECONDS = 60.0


class LearnedCache:
    """Per key: (process clock, latest call ms learned at, value)."""

    def __init__(self):
        self.entries: dict[Hashable, tuple[float, int, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, at_ms: int, learn: Callable[[], object], *,
            clock=time.monotonic):
        """The value for ``key`` as of a call at ``at_ms``, learned anew when stale."""
        now = clock()
        cached = self.entries.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS \
                and at_ms - cached[1] < CACHE_SECONDS * 1000:
            return cached[2]
        value = learn()
        with self._lock:
            self.entries[key] = (now, max(at_ms, cached[1]) if cached else at_ms, value)
        return value

    def forget(self, matches: Callable[[Hashable], bool] = lambda key: True) -> None:
        """Drop the entries whose key ``matches`` (all by default)."""
        with self._lock:
            for key in [k for k in self.entries if matches(k)]:
                del self.entries[key]
