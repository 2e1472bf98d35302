"""Redis killed and restarted empty under load: pools come back from SQL, no number is
given to two live sessions, and live sessions keep their own number where SQL knew it."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
import requests
from faultkit import Traffic, report, sql_scalar, wait_for, wait_until

from factories import numbers


def number_of(answer) -> str | None:
    """The tracking number an answer shows, None for an error or a fallback."""
    if answer.status != 200:
        return None
    [entry] = answer.body["numbers"]
    return None if entry["fallback"] else entry["number"]


def settled_heartbeat(traffic, http, session_id):
    """A heartbeat, asked again while the answer is ``unavailable``: on a loaded machine
    Redis can miss the 50 ms timeout, and the process then rests Redis for a second."""
    for _ in range(10):
        answer = traffic.heartbeat(http, session_id)
        if answer.status != 200 or answer.body["numbers"][0].get("reason") != "unavailable":
            return answer
        time.sleep(1.1)
    return answer


@pytest.mark.parametrize("recorder", ["running", "paused"])
def test_redis_restarted_empty_during_load(private_redis, fault_database, start_service,
                                           recorder):
    """``paused``: the worker is stopped for the last second before the crash, so the
    newest leases never reached SQL: they must come back as fallbacks, never as a number
    someone else now holds."""
    service = start_service(fault_database, private_redis.url)
    # Big enough, and the load paced, so that a fast machine does not lease every number
    # before the crash (every new session would then be a pool_exhausted fallback).
    site, pool = service.make_pool(3000)
    # A call records its pool's pending leases before matching: without calls, the paused
    # worker is the only way to SQL.
    mix = ("session", "heartbeat", "heartbeat", "heartbeat") + (
        ("call",) if recorder == "running" else ())
    traffic = Traffic(service.base, site["key"], numbers(600, start=200)[:30], mix=mix,
                      pause=0.005).start()
    try:
        wait_for(traffic, 0, 15, kinds=("session",), test=number_of, at_least=2)
        # The worker process is up and recording (it starts slowly on a busy machine).
        assert wait_until(lambda: sql_scalar(fault_database, "SELECT count(*) FROM leases")
                          >= 10, 40, 0.5)
        if recorder == "paused":
            os.kill(service.worker.pid, signal.SIGSTOP)
            wait_for(traffic, time.monotonic(), 3, kinds=("session",), test=number_of,
                     at_least=1)
        killed = time.monotonic()
        private_redis.kill()
        private_redis.start()
        restarted = time.monotonic()
        os.kill(service.worker.pid, signal.SIGCONT)
        wait_for(traffic, restarted, 60, test=number_of, at_least=3)
    finally:
        traffic.stop()
    assert all(0 < a.status < 500 for a in traffic.answers), Counter(
        a.status for a in traffic.answers)

    # What each session was shown last before the kill, and when its lease began.
    held_at_kill: dict[str, str] = {}
    leased_at: dict[str, float] = {}
    for answer in sorted(traffic.since(0, killed), key=lambda a: a.started):
        if answer.kind in ("session", "heartbeat"):
            held_at_kill[answer.key] = number_of(answer)
            if answer.kind == "session":
                leased_at[answer.key] = answer.started + answer.seconds
    held_at_kill = {sid: n for sid, n in held_at_kill.items() if n}
    assert len(held_at_kill) > 10

    # After the restart, once another session is shown a number, no earlier holder is
    # ever shown it again (renewals never hand out a number the session does not hold).
    shown = [(a.started, a.key, number_of(a)) for a in traffic.since(restarted)
             if a.kind in ("session", "heartbeat")]
    holders: dict[str, list[str]] = {}
    for _, sid, number in sorted(shown):
        if number:
            seq = holders.setdefault(number, [])
            if not seq or seq[-1] != sid:
                assert sid not in seq, f"{number} went back to {sid} after {seq}"
                seq.append(sid)
    assert any(number for _, _, number in shown), "no lease after the restart"

    # Every session asks once more, one after another: the live ones hold distinct numbers,
    # and Redis names each of them as its number's holder.
    http = requests.Session()
    sessions = sorted({a.key for a in traffic.answers if a.kind == "session" and number_of(a)})
    final = {sid: number_of(settled_heartbeat(traffic, http, sid)) for sid in sessions}
    live = {sid: n for sid, n in final.items() if n}
    assert len(set(live.values())) == len(live), "a number is held by two live sessions"
    holder = private_redis.client().hgetall(f"dni:pool:{{{pool['id']}}}:holder")
    assert {n: h.split("|")[0] for n, h in holder.items()} == {n: s for s, n in live.items()}

    # Sessions live at the kill: those SQL knew about got their own number back.
    kept = [sid for sid, n in held_at_kill.items() if final.get(sid) == n]
    lost = [sid for sid, n in held_at_kill.items() if final.get(sid) != n]
    assert all(final.get(sid) is None for sid in lost)  # lost means a fallback, never another
    assert kept, "no session kept its number"
    if recorder == "paused":
        assert lost, "the paused recorder should have left the newest leases out of SQL"
    kept_ages = sorted(round(1000 * (killed - leased_at[s])) for s in kept if s in leased_at)
    lost_ages = sorted(round(1000 * (killed - leased_at[s])) for s in lost if s in leased_at)
    # The worker needs a moment to store everything, then SQL holds each kept lease.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        recorded = sql_scalar(fault_database, "SELECT count(*) FROM leases WHERE "
                                              "session_id = ANY(:ids)", ids=kept)
        if recorded == len(kept):
            break
        time.sleep(0.5)
    assert recorded == len(kept)
    reused = sum(1 for sid in lost if held_at_kill[sid] in live.values())
    visits = sql_scalar(fault_database, "SELECT count(*) FROM visits WHERE "
                                        "session_id = ANY(:ids)", ids=lost)
    report(f"redis_restarted_empty[{recorder}]", requests=len(traffic.answers),
           live_at_kill=len(held_at_kill), kept_own_number=len(kept), lost_number=len(lost),
           youngest_kept_lease_age_at_kill_ms=kept_ages[:5], lost_lease_age_at_kill_ms=lost_ages,
           visits_of_lost_sessions_in_sql=visits,
           lost_numbers_now_held_by_another=reused, live_at_end=len(live),
           holders_checked=len(holder))
