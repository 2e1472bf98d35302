"""Racing calls on two app servers against a buyer with a concurrency of 2 (issue 15,
"Concurrency", at a size this machine runs in seconds): calls placed at once, in real time,
through one simulator each; never more than 2 connected to that buyer at any instant, every
other call routed to the next buyer, no call lost."""

from __future__ import annotations

import threading
import time

import pytest

from carriers.conftest import PUBLIC_URL
from carriers.scripts import Caller, Line
from carriers.test_routing_twilio import BUYER_1, BUYER_2, buyer, routed_number
from carriers.twilio_sim import TwilioSimulator
from factories import TWILIO_TOKEN

CALLERS = 8
LIMIT = 2


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


@pytest.mark.slow
def test_racing_calls_never_exceed_a_buyers_concurrency(two_servers):
    capped = buyer(two_servers, BUYER_1, caps={"concurrency": LIMIT})
    spare = buyer(two_servers, BUYER_2)
    number = routed_number(two_servers, [{"buyers": [capped], "mode": "weighted"},
                                         {"buyers": [spare], "mode": "weighted"}])
    results, spans, failures = [], {BUYER_1: [], BUYER_2: []}, []
    start = threading.Barrier(CALLERS)

    def place(index: int) -> None:
        sim = TwilioSimulator(PUBLIC_URL, TWILIO_TOKEN, backends=list(two_servers.backends), real_time=1.0)
        bridged = {}
        sim.on_bridge = lambda call, offer: bridged.update(target=offer.target,
                                                           at=time.monotonic())

        def dial_ended(url):
            if url.endswith("/dial") and "at" in bridged and "until" not in bridged:
                bridged["until"] = time.monotonic()

        sim.before_request = dial_ended
        start.wait(10)
        try:
            call = sim.call(number, Caller(f"+1415555{index:04d}", talk=1.5), lines={
                BUYER_1: Line.answers(0.2), BUYER_2: Line.answers(0.2)})
        except Exception as exc:  # reported below, with the others
            failures.append(repr(exc))
            return
        finally:
            sim.http.close()
        results.append(call)
        if "until" in bridged:
            spans[bridged["target"]].append((bridged["at"], bridged["until"]))

    threads = [threading.Thread(target=place, args=(i,)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == [] and len(results) == CALLERS
    assert [c.errors for c in results if c.errors] == []
    assert all(c.bridged is not None for c in results)  # no call lost
    assert most_at_once(spans[BUYER_1]) <= LIMIT  # never over
    assert len(spans[BUYER_1]) + len(spans[BUYER_2]) == CALLERS
    assert spans[BUYER_1] and spans[BUYER_2]  # the cap turned calls to the next buyer
