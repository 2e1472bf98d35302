"""Template filters: metrics and times as people read them."""

from __future__ import annotations

import datetime as dt

from attribution.zones import zone
from dni_server.dashboard import bp

MONEY = {"revenue", "payout", "margin", "buyer_revenue"}
PERCENTS = {"qualification_rate", "answer_rate"}
RATES = PERCENTS | {"calls_per_session"}
SECONDS = {"total_talk_time", "average_talk_time"}
# Ring times are short and averaged: tenths of a second say more than m:ss.
RING_SECONDS = {"avg_ring_seconds", "total_ring_seconds"}
LABELS = {"qualified_calls": "Qualified", "unique_callers": "Unique callers",
          "first_time_callers": "First-time", "answered_calls": "Answered",
          "total_talk_time": "Talk time", "average_talk_time": "Avg talk",
          "qualification_rate": "Qual. rate", "calls_per_session": "Calls / session",
          # Pay-per-call routing (routing.reports)
          "routed_calls": "Routed", "connected_calls": "Connected",
          "converted_calls": "Converted", "buyer_revenue": "Buyer revenue",
          "answered_offers": "Answered offers", "answer_rate": "Answer rate",
          "avg_ring_seconds": "Avg ring", "total_ring_seconds": "Ring time",
          "timed_offers": "Timed offers"}


@bp.app_template_filter("metric")
def metric(value, name: str) -> str:
    if value is None:
        return "–"
    if name in MONEY:
        return f"{float(value):,.2f}"
    if name in PERCENTS:
        return f"{float(value):.1%}"
    if name in RATES:
        return f"{float(value):.3f}"
    if name in SECONDS:
        return duration(value)
    if name in RING_SECONDS:
        return f"{float(value):,.1f} s"
    return f"{int(value):,}"


@bp.app_template_filter("metric_label")
def metric_label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


@bp.app_template_filter("duration")
def duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(float(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@bp.app_template_filter("when")
def when(moment, zone_name: str | None = None) -> str:
    """A moment in UTC, or in ``zone_name`` (a site's zone) with that zone's abbreviation."""
    if moment is None:
        return "–"
    if isinstance(moment, int | float):  # epoch milliseconds (lease history)
        moment = dt.datetime.fromtimestamp(moment / 1000, dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if zone_name:
        return moment.astimezone(zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S %Z")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("web_link")
def web_link(url) -> str | None:
    """The URL if it is http(s), else None: nothing else is rendered as a link."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None
