"""Sending one batch to one destination over HTTP, with a log record fit to be shown.

``deliver`` checks each conversion, refreshes credentials, sends what can be sent (split into
requests by ``Destination.split``) and reads the answers. Network errors and timeouts become
``retry`` outcomes. For all-or-nothing platforms (Google Data Manager, Meta) a 400 that does
not say which events are bad is bisected: each half is sent on its own until the bad events
are isolated and the good ones are accepted.

Everything in the log record passes through ``Destination.redact``: tokens and secrets are
masked wherever they appear (URL, body, error text).
"""

from __future__ import annotations

import datetime as dt
import time

import requests

from attribution.conversions.base import Conversion, Outcome
from attribution.conversions.destination import AuthError, Destination
from attribution.conversions.outbound import ForbiddenAddress

LOG_BODY_LIMIT = 200_000  # characters kept of each request/response body in the log


def _text(destination: Destination, body: bytes) -> str:
    text = destination.redact(body.decode("utf-8", "replace"))
    return text if len(text) <= LOG_BODY_LIMIT else text[:LOG_BODY_LIMIT] + "...[truncated]"


class _Delivery:
    def __init__(self, destination: Destination, now: dt.datetime, session: requests.Session,
                 timeout: float):
        self.destination = destination
        self.now = now
        self.session = session
        self.timeout = timeout
        self.outcomes: dict[str, Outcome] = {}
        self.records: list[dict] = []

    def send(self, chunk: list[Conversion]) -> None:
        d = self.destination
        request = d.prepare(chunk, self.now)
        record = {"method": request.method, "url": request.redacted_url,
                  "request_body": _text(d, request.body), "events": len(chunk),
                  "status": None, "response_body": None, "elapsed_ms": None}
        self.records.append(record)
        started = time.perf_counter()
        try:
            # No redirects: one would take the request (and its credentials) somewhere else.
            response = self.session.request(request.method, request.url, headers=request.headers,
                                            data=request.body, timeout=self.timeout,
                                            allow_redirects=False)
        except ForbiddenAddress as exc:
            # Not a passing network trouble: the destination's address is not allowed.
            record["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
            record["error"] = f"ForbiddenAddress: {exc}"[:500]
            for conv in chunk:
                self.outcomes[conv.key] = Outcome(conv.key, "failed", f"{d.kind}: refused: {exc}")
            return
        except requests.RequestException as exc:
            record["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
            record["error"] = d.redact(f"{type(exc).__name__}: {exc}")[:500]
            detail = f"{d.kind}: network error: {type(exc).__name__}"
            for conv in chunk:
                self.outcomes[conv.key] = Outcome(conv.key, "retry", detail)
            return
        record["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        record["status"] = response.status_code
        record["response_body"] = _text(d, response.content)
        results = d.read(response.status_code, response.headers, response.content, chunk)
        if (len(chunk) > 1 and d.all_or_nothing and all(o.status == "failed" for o in results)
                and d.bisectable(response.status_code, response.content)):
            middle = len(chunk) // 2
            record["bisected"] = True
            self.send(chunk[:middle])
            self.send(chunk[middle:])
            return
        for outcome in results:
            self.outcomes[outcome.key] = outcome
        # the platform rejected the request for other events, now failed: send these again
        resend = [c for c, o in zip(chunk, results, strict=True) if o.extra.get("resend")]
        if resend and len(resend) < len(chunk):
            self.send(resend)


def deliver(destination: Destination, convs: list[Conversion], now: dt.datetime,
            session: requests.Session, timeout: float | None = None) -> tuple[list[Outcome], dict]:
    """Send ``convs`` and return one outcome per conversion (in order) and the log record.

    The record has the first request at top level (``method``, ``url`` (redacted),
    ``request_body``, ``status``, ``response_body``, ``elapsed_ms``) and every request made,
    bisection included, under ``requests``.
    """
    delivery = _Delivery(destination, now, session, timeout or destination.timeout)
    sendable = []
    for conv in convs:
        reason = destination.check(conv, now)
        if reason:
            delivery.outcomes[conv.key] = Outcome(conv.key, getattr(reason, "status", "failed"), str(reason))
        else:
            sendable.append(conv)
    error = None
    if sendable:
        try:
            destination.authenticate(session, now, delivery.timeout)
        except AuthError as exc:
            error = destination.redact(f"{destination.kind}: {exc}")
            for conv in sendable:
                delivery.outcomes[conv.key] = Outcome(conv.key, "retry", error)
        else:
            for chunk in destination.split(sendable):
                delivery.send(chunk)
    first = delivery.records[0] if delivery.records else {
        "method": None, "url": None, "request_body": None, "status": None,
        "response_body": None, "elapsed_ms": None}
    log = {"kind": destination.kind, **first, "requests": delivery.records}
    if error:
        log["error"] = error
    return [delivery.outcomes[c.key] for c in convs], log
