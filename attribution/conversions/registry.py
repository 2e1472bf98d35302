"""The destinations by kind, and building one from its config mapping."""

from __future__ import annotations

from collections.abc import Mapping

from attribution.conversions.destination import Destination
from attribution.conversions.ga4 import GA4MeasurementProtocol
from attribution.conversions.google import GoogleDataManager
from attribution.conversions.meta import MetaConversions
from attribution.conversions.microsoft import MicrosoftAdvertising

DESTINATIONS: dict[str, type[Destination]] = {
    "google": GoogleDataManager,
    "microsoft": MicrosoftAdvertising,
    "meta": MetaConversions,
    "ga4": GA4MeasurementProtocol,
}


def build_destination(kind: str, config: Mapping) -> Destination:
    """A destination of ``kind`` from ``config``; ValueError naming the bad kind or key."""
    try:
        cls = DESTINATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown destination kind {kind!r}: one of {sorted(DESTINATIONS)}") from None
    return cls(config)
