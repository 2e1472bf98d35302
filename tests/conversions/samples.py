"""Conversions to test with, at a fixed moment."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from attribution.conversions.base import Conversion

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
CALL_AT = dt.datetime(2026, 3, 1, 18, 45, tzinfo=dt.UTC)
CLICK_AT = dt.datetime(2026, 3, 1, 18, 26, 40, tzinfo=dt.UTC)

BASE = Conversion(key="call-4711-qualified", call_id=4711, kind="conversion", occurred_at=CALL_AT,
                  name="Qualified call", value=Decimal("120.00"), currency="USD", consent=True,
                  caller_e164="+16505550123", gclid="EAIaIQobChMI-example",
                  msclkid="f894f652ea334e739002f7167ab8f8e3",
                  fbclid="IwAR-example", click_at=CLICK_AT, ga_client_id="1234567890.1699999999",
                  ga_session_id="1772390000", timezone="America/New_York")


def conversion(**changes) -> Conversion:
    return replace(BASE, **changes)


def many(n: int, **changes) -> list[Conversion]:
    return [conversion(key=f"call-{i}-qualified", call_id=i, **changes) for i in range(1, n + 1)]
