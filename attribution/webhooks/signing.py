"""The ``DNI-Signature`` header: Stripe's signing scheme, with our header name.

``DNI-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, keyed with
the subscription's secret. A receiver recomputes the HMAC over the raw bytes it received
(never a re-serialised JSON), compares in constant time, and refuses a ``t`` further than
its tolerance from its own clock, so a captured request cannot be replayed later. Several
``v1`` values may appear (one per secret while a secret is being rotated): any may match.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "DNI-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The header is missing, malformed, stale, or matches no signature."""


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    signed = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header_value(secret: str, body: bytes, timestamp: int) -> str:
    """The header's value for ``body`` sent at ``timestamp``."""
    return f"t={int(timestamp)},{SCHEME}={signature(secret, body, timestamp)}"


def verify(body: bytes, header: str | None, secret: str, *,
           tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> int:
    """Check a received request; returns its timestamp, or raises ``SignatureError``.

    ``body``: the raw request body, exactly as received. ``tolerance``: seconds either side
    of ``now`` (default: this machine's clock) the timestamp may be; 0 or less skips it.
    """
    if not header:
        raise SignatureError(f"no {HEADER} header")
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"{HEADER} has no t=<seconds> or no {SCHEME}=<signature>")
    expected = signature(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, given) for given in candidates):
        raise SignatureError("no signature matches the body and the secret")
    if tolerance > 0 and abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureError(f"the timestamp is more than {tolerance} s from now")
    return timestamp
