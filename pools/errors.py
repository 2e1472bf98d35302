"""Pool outcomes that are not a lease, each a subclass of PoolError.

The web layer turns ``reason`` into the snippet API's fallback reason; none of these is an
HTTP error: a visitor who gets no tracking number still gets the page's own number.
"""

from __future__ import annotations


class PoolError(Exception):
    """Base class; ``reason`` is the value reported beside a fallback number."""

    reason = "unavailable"

    def __init__(self, pool_id: int | None = None, *, target: str | None = None,
                 fallback: str | None = None):
        super().__init__(f"{type(self).__name__} (pool {pool_id})")
        self.pool_id = pool_id
        self.target = target
        self.fallback = fallback


class PoolExhausted(PoolError):
    """No number is free (or all free ones are still cooling down)."""

    reason = "pool_exhausted"


class RateLimited(PoolError):
    """This IP or visitor asked for new leases faster than allowed."""

    reason = "rate_limited"


class LeaseNotHeld(PoolError):
    """The session holds no number in this pool (released or lapsed)."""

    reason = "expired"


class MaxLeaseAgeExceeded(PoolError):
    """The lease was renewed past the pool's maximum age and has ended."""

    reason = "expired"


class PoolNotLoaded(PoolError):
    """Redis has no state for this pool (new, or Redis restarted empty): sync it from SQL."""


class WrongSite(PoolError):
    """The pool named by a session belongs to another site."""


class PoolUnavailable(PoolError):
    """Redis could not be reached in time."""


class UnexpectedReply(PoolError):
    """A script answered with a code this code does not know: a bug, never ignored."""
