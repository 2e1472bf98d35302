"""Twilio voice-webhook throughput as a ratio to a bare Flask endpoint (issue 4), and with
pay-per-call routing as a ratio to plain forwarding (issue 15).

Starts the service and the bare app under the same gunicorn settings (bench/harness.py),
creates a pool, signs N distinct Twilio voice webhooks (one new call each, as Twilio would
send them), and alternates wrk runs of the bare endpoint and the webhook. Each webhook is
checked, matched, stored with its event and answered with TwiML, so this is the whole cost
of a call arriving. The routed case sends new calls to a second pool whose routing plan has
a ZIP step and a weighted tier of 10 buyers with caps: the same work, plus the plan's first
turn (its state written to Redis) and a <Gather> answered instead of a <Dial>. Prints req/s,
p50/p99 and the ratios.

    python bench/webhook_throughput.py [--db postgres|sqlite] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twilio.request_validator import RequestValidator  # noqa: E402

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    LUA_DONE,
    BenchPool,
    Gunicorn,
    bench_result,
    bench_setting,
    done_result,
    log,
    migrate,
    write_lua,
    wrk_output,
)

TOKEN = "bench-twilio-token"
WEBHOOK_LUA = r"""
local i = 0
bad = 0  -- global: done() reads each thread's count
request = function()
  i = i + 1
  local r = REQUESTS[(i - 1) % #REQUESTS + 1]
  return wrk.format("POST", "/webhooks/twilio/voice", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = r[2]}, r[1])
end
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, EXPECTED, 1, true) then bad = bad + 1 end
end
""" + LUA_DONE
ROUTED_BUYERS = 10
ZIP_STEP = {"type": "zip", "text": "Please key your ZIP code.", "retries": 1,
            "on_failure": "continue"}


def signed_calls(port: int, numbers: list[str], count: int) -> list[tuple[str, str]]:
    """(form body, signature) for ``count`` distinct calls, signed as Twilio signs them."""
    validator = RequestValidator(TOKEN)
    url = f"http://127.0.0.1:{port}/webhooks/twilio/voice"
    rng = random.Random(4)
    out = []
    for i in range(count):
        params = {"CallSid": f"CA{secrets.token_hex(16)}", "AccountSid": "AC" + "0" * 32,
                  "From": f"+1415555{i % 10000:04d}", "To": rng.choice(numbers),
                  "CallStatus": "ringing", "ApiVersion": "2010-04-01", "Direction": "inbound"}
        out.append((urlencode(params), validator.compute_signature(url, params)))
    return out


def write_webhook_lua(path: Path, requests: list[tuple[str, str]],
                      expected: str = "<Dial") -> Path:
    """wrk's script: the signed calls in turn, an answer without ``expected`` counted bad."""
    rows = ",\n".join(f"  {{{json.dumps(body)}, {json.dumps(sig)}}}" for body, sig in requests)
    path.write_text(f"REQUESTS = {{\n{rows}\n}}\nEXPECTED = {json.dumps(expected)}\n"
                    f"{WEBHOOK_LUA}")
    return path


def routed_pool(pool: BenchPool, count: int = 50) -> list[str]:
    """A second pool of ``count`` numbers whose calls follow a plan: a ZIP step, then a
    weighted tier of 10 buyers, each with caps and a concurrency; returns its numbers."""
    buyers = [pool._admin("/v1/buyers", {
        "name": f"Buyer {i}", "timezone": "America/New_York", "revenue": "40.00",
        "targets": [{"number": f"+1212555{1000 + i:04d}", "weight": 1 + i % 3}],
        "caps": {"concurrency": 1000, "calls": {"day": 1_000_000},
                 "conversions": {"day": 100_000, "month": 1_000_000}},
        "conversion": {"min_duration": 60}})["id"] for i in range(ROUTED_BUYERS)]
    plan = pool._admin("/v1/routing-plans", {
        "name": "bench", "ivr": [ZIP_STEP], "tiers": [{"buyers": buyers, "mode": "weighted"}],
        "fallback": {"number": "+12125550199"}})["id"]
    numbers = [next(pool.numbers) for _ in range(count)]
    pool._admin("/v1/pools", {"site": pool.site_key, "name": "routed",
                              "target": "+18005550101", "destination": "+12125550199",
                              "numbers": numbers, "routing_plan": plan})
    return numbers


def run_wrk(port: int, script: Path, seconds: float, connections: int) -> dict:
    out = wrk_output(port, script, seconds, connections)
    if "BENCH_RESULT " in out:  # the harness's own script (bare endpoint)
        data = bench_result(out)
        return {"rps": data["requests"] / (data["duration_us"] / 1e6),
                "p50": data["p50_us"] / 1000, "p99": data["p99_us"] / 1000,
                "bad": data.get("non_2xx", 0), "errors": 0, "requests": data["requests"]}
    result = done_result(out)
    return {**result, "rps": result["requests"] / result["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with ExitStack() as stack:
        setting = bench_setting(stack, args.db, args.postgres_url, "dni-webhook-bench-")
        tmp, rdb, admin, env = setting.tmp, setting.rdb, setting.token, setting.env
        env.update({"DNI_TWILIO_AUTH_TOKEN": TOKEN, "WEB_CONCURRENCY": "2"})
        migrate(env)
        service = Gunicorn("service", "wsgi:app", env, tmp)
        stack.callback(service.stop)
        bare = Gunicorn("bare", "bench.bare_app:app", env, tmp)
        stack.callback(bare.stop)
        service.wait_ready()
        bare.wait_ready()
        pool = BenchPool(service.port, admin, rdb)
        numbers = pool.taken
        # Enough distinct calls that no run repeats one (a repeat is the cheap idempotent path).
        calls = {"webhook": signed_calls(service.port, numbers, 30_000),
                 "routed": signed_calls(service.port, routed_pool(pool), 30_000)}
        expected = {"webhook": "<Dial", "routed": "<Gather"}
        scripts = {kind: write_webhook_lua(tmp / f"{kind}.lua", calls[kind], expected[kind])
                   for kind in calls}
        scripts["bare"] = write_lua(tmp / "bare.lua", [("/bare", json.dumps({"site": "x"}),
                                                        "Mozilla/5.0")])
        results: dict[str, list[dict]] = {"bare": [], "webhook": [], "routed": []}
        offset = {"webhook": 0, "routed": 0}
        for _ in range(args.rounds):
            for kind in ("bare", "webhook", "routed"):
                server = bare if kind == "bare" else service
                if kind != "bare":
                    # Each round starts further into the list: no call is sent twice.
                    start = offset[kind]
                    calls[kind] = calls[kind][start:] + calls[kind][:start]
                    write_webhook_lua(scripts[kind], calls[kind], expected[kind])
                run_wrk(server.port, scripts[kind], 2, args.connections)  # warm-up, discarded
                result = run_wrk(server.port, scripts[kind], args.seconds, args.connections)
                if kind != "bare":
                    offset[kind] = result["requests"] + 2_000
                results[kind].append(result)
                log(f"  {kind:8} {result['rps']:8.0f} req/s  p50 {result['p50']:6.1f} ms  "
                    f"p99 {result['p99']:6.1f} ms  bad {result['bad']}  "
                    f"errors {result['errors']}")
        # Other work on the machine moves these figures: say how busy it was.
        log(f"load average at the end (1, 5, 15 min): "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        bare_rps = statistics.median(r["rps"] for r in results["bare"])
        hook = results["webhook"]
        hook_rps = statistics.median(r["rps"] for r in hook)
        print(f"webhook throughput ({args.db}): {hook_rps:.0f} req/s, "
              f"p50 {statistics.median(r['p50'] for r in hook):.1f} ms, "
              f"p99 {statistics.median(r['p99'] for r in hook):.1f} ms; bare {bare_rps:.0f} "
              f"req/s; ratio {hook_rps / bare_rps:.2f}; bad answers "
              f"{sum(r['bad'] for r in hook)}, socket errors {sum(r['errors'] for r in hook)}")
        routed = results["routed"]
        routed_rps = statistics.median(r["rps"] for r in routed)
        print(f"routed new calls (ZIP step, weighted tier of {ROUTED_BUYERS} buyers with caps): "
              f"{routed_rps:.0f} req/s, p50 {statistics.median(r['p50'] for r in routed):.1f} "
              f"ms, p99 {statistics.median(r['p99'] for r in routed):.1f} ms; ratio to "
              f"forwarding {routed_rps / hook_rps:.2f} (target >= 0.80); bad answers "
              f"{sum(r['bad'] for r in routed)}, socket errors "
              f"{sum(r['errors'] for r in routed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
