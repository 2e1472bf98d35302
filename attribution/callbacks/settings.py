"""Web callback settings, as plain values.

``dni_server.config`` reads them from the environment (``DNI_CALLBACK_*``, checked there)
and the app builds one ``CallbackSettings`` for the API, the carriers' webhooks and the
worker; tests build their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from attribution.callbacks.limits import Limits


@dataclass(frozen=True)
class CallbackSettings:
    carrier: str | None = None  # twilio or telnyx; default: whichever has credentials
    retry_seconds: int = 600  # after no answer, busy or a machine on the visitor's side
    max_attempts: int = 3
    business_timeout: int = 25  # seconds the business's phone rings
    visitor_timeout: int = 25
    claim_seconds: int = 900  # a "calling" callback with no news this long is retried
    site_in_progress: int = 50  # per-site cap on callbacks in progress (0 = none)
    twilio_api_url: str = "https://api.twilio.com"
    telnyx_connection_id: str | None = None

    def limits(self) -> Limits:
        return Limits(site_in_progress=self.site_in_progress)
