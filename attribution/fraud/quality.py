"""The publisher quality report: per publisher and period, how its calls look against the
network's, with a test of whether each difference is more than chance.

Rates: blocked and flagged (held for review) shares, each signal's firing rate, duplicates
(repeat callers), the share of calls with attestation A, and talk times just past a
threshold against what the publisher's own durations predict (the calls ending in the
equally wide window just after it: a smooth distribution fills both about alike, a farm
fills the first). A publisher's rate is compared with the rest of the network's by a
two-proportion z-test; it is ``significant`` when higher with p < ``ALPHA`` (``sure`` is
1 - p). Read in one query over the period's calls, aggregated here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

from sqlalchemy import select

from attribution.models import Call

ALPHA = 0.01
MIN_CALLS = 20  # fewer calls than this: rates shown, never called significant
BASE_RATES = ("blocked", "flagged", "duplicate", "attestation_a")


def p_value_higher(hits: int, total: int, other_hits: int, other_total: int) -> float:
    """One-sided p-value that a rate of hits/total is above other_hits/other_total."""
    if not total or not other_total:
        return 1.0
    pooled = (hits + other_hits) / (total + other_total)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / other_total))
    if spread == 0:
        return 1.0
    z = (hits / total - other_hits / other_total) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))


def p_value_above_half(hits: int, total: int) -> float:
    """One-sided p-value that hits out of total is more than half (normal approximation)."""
    if not total:
        return 1.0
    return 0.5 * math.erfc((hits - total / 2) / math.sqrt(total / 4) / math.sqrt(2))


def _counts(rows) -> dict:
    """Per publisher: calls, and hits per rate (signals included)."""
    out: dict = defaultdict(lambda: defaultdict(int))
    for publisher, action, review, repeat, signals in rows:
        c = out[publisher or ""]
        c["calls"] += 1
        c["blocked"] += action == "block"
        c["flagged"] += review is not None
        c["duplicate"] += bool(repeat)
        for s in (signals or {}).get("signals", []):
            if s.get("fired"):
                c[f"signal:{s['name']}"] += 1
            value = s.get("value") if isinstance(s.get("value"), dict) else {}
            if s["name"] == "stir_shaken":
                c["attestation_a"] += value.get("level") == "A" and value.get("verified") is True
            if s["name"] == "threshold_hugging" and value.get("thresholds"):
                _hugging(c, value)
    return out


def _hugging(c, value: dict, width: int = 5) -> None:
    past = [value["duration"] - t for t in value["thresholds"]]
    c["hug_calls"] += 1
    c["hug_observed"] += any(0 <= p <= width for p in past)
    c["hug_expected"] += any(width < p <= 2 * width + 1 for p in past)


def _rate(c: dict, rest: dict, key: str) -> dict:
    """The publisher's rate against the rest of the network's; for attestation A a lower
    share is the worse one."""
    total, hits = c["calls"], c[key]
    other_total, other_hits = rest["calls"], rest[key]
    if key == "attestation_a":
        p = p_value_higher(total - hits, total, other_total - other_hits, other_total)
    else:
        p = p_value_higher(hits, total, other_hits, other_total)
    baseline = other_hits / other_total if other_total else None
    return {"rate": round(hits / total, 4) if total else None,
            "baseline": round(baseline, 4) if baseline is not None else None,
            "p_value": round(p, 6), "sure": round(1 - p, 4),
            "significant": total >= MIN_CALLS and p < ALPHA}


def quality_report(db, start: dt.datetime, end: dt.datetime, *, site_id: int | None = None,
                   publisher: str | None = None) -> dict:
    """Rows for every publisher (or only ``publisher``: a publisher's token sees its own row
    and the network's aggregate rates, never another publisher's)."""
    query = select(Call.publisher, Call.fraud_action, Call.review_state, Call.repeat_caller,
                   Call.fraud_signals).where(Call.started_at >= start, Call.started_at < end)
    if site_id is not None:
        query = query.where(Call.site_id == site_id)
    counts = _counts(db.execute(query))
    network: dict = defaultdict(int)
    for c in counts.values():
        for key, value in c.items():
            network[key] += value
    names = sorted({k for c in counts.values() for k in c if k.startswith("signal:")})
    rows = []
    for name, c in sorted(counts.items()):
        if publisher is not None and name != publisher:
            continue
        rest = {key: network[key] - c.get(key, 0) for key in network}
        rest = defaultdict(int, rest)
        rates = {key: _rate(c, rest, key) for key in BASE_RATES}
        rates |= {key.removeprefix("signal:"): _rate(c, rest, key) for key in names}
        hug = {"observed": c["hug_observed"], "expected": c["hug_expected"],
               "ratio": round(c["hug_observed"] / c["hug_expected"], 2)
               if c["hug_expected"] else None,
               # Observed against the neighbouring window: more than half of the two?
               "p_value": round(p_value_above_half(
                   c["hug_observed"], c["hug_observed"] + c["hug_expected"]), 6)}
        hug["significant"] = (c["hug_observed"] + c["hug_expected"] >= MIN_CALLS
                              and hug["p_value"] < ALPHA)
        rows.append({"publisher": name or None, "calls": c["calls"], "rates": rates,
                     "threshold_hugging": hug,
                     "flag": sorted(k for k, r in rates.items() if r["significant"])
                     + (["threshold_hugging_excess"] if hug["significant"] else [])})
    return {"start": start.isoformat(), "end": end.isoformat(), "calls": network["calls"],
            "publishers": rows}
