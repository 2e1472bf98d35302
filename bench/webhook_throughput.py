"""Twilio voice-webhook throughput as a ratio to a bare Flask endpoint (issue 4).

Starts the service and the bare app under the same gunicorn settings (bench/harness.py),
creates a pool, signs N distinct Twilio voice webhooks (one new call each, as Twilio would
send them), and alternates wrk runs of the bare endpoint and the webhook. Each webhook is
checked, matched, stored with its event and answered with TwiML, so this is the whole cost
of a call arriving. Prints req/s, p50/p99 and the ratio.

    python bench/webhook_throughput.py [--db postgres|sqlite] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
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
  if status ~= 200 or not string.find(body, "<Dial", 1, true) then bad = bad + 1 end
end
""" + LUA_DONE


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


def write_webhook_lua(path: Path, requests: list[tuple[str, str]]) -> Path:
    rows = ",\n".join(f"  {{{json.dumps(body)}, {json.dumps(sig)}}}" for body, sig in requests)
    path.write_text(f"REQUESTS = {{\n{rows}\n}}\n{WEBHOOK_LUA}")
    return path


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
        calls = signed_calls(service.port, numbers, 30_000)
        webhook_lua = write_webhook_lua(tmp / "webhook.lua", calls)
        bare_lua = write_lua(tmp / "bare.lua", [("/bare", json.dumps({"site": "x"}),
                                                 "Mozilla/5.0")])
        results: dict[str, list[dict]] = {"bare": [], "webhook": []}
        offset = 0
        for _ in range(args.rounds):
            for kind in ("bare", "webhook"):
                server, script = (bare, bare_lua) if kind == "bare" else (service, webhook_lua)
                if kind == "webhook":
                    # Each round starts further into the list: no call is sent twice.
                    calls = calls[offset:] + calls[:offset]
                    write_webhook_lua(webhook_lua, calls)
                run_wrk(server.port, script, 2, args.connections)  # warm-up, discarded
                result = run_wrk(server.port, script, args.seconds, args.connections)
                offset = result["requests"] + 2_000
                results[kind].append(result)
                log(f"  {kind:8} {result['rps']:8.0f} req/s  p50 {result['p50']:6.1f} ms  "
                    f"p99 {result['p99']:6.1f} ms  bad {result['bad']}  "
                    f"errors {result['errors']}")
        bare_rps = statistics.median(r["rps"] for r in results["bare"])
        hook = results["webhook"]
        hook_rps = statistics.median(r["rps"] for r in hook)
        print(f"webhook throughput ({args.db}): {hook_rps:.0f} req/s, "
              f"p50 {statistics.median(r['p50'] for r in hook):.1f} ms, "
              f"p99 {statistics.median(r['p99'] for r in hook):.1f} ms; bare {bare_rps:.0f} "
              f"req/s; ratio {hook_rps / bare_rps:.2f}; bad answers "
              f"{sum(r['bad'] for r in hook)}, socket errors {sum(r['errors'] for r in hook)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
