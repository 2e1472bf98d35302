"""The worker's web callback step: places due callbacks through the configured carrier.

Which carrier: ``DNI_CALLBACK_CARRIER``, else Twilio when its account SID and auth token are
set, else Telnyx when its API key and ``DNI_TELNYX_CONNECTION_ID`` are. ``DNI_PUBLIC_URL``
is required: the carrier fetches the prompt and reports on the legs there. Without either,
callbacks wait (scheduled) and the reason is logged once.
"""

from __future__ import annotations

import logging

from attribution.callbacks.calling import run_due
from attribution.callbacks.dialing import TelnyxDialer, TwilioDialer
from pools.models import utcnow

log = logging.getLogger(__name__)


def make_dialer(settings, own):
    """The carrier client for callbacks, or (None, why not)."""
    if not settings.public_url:
        return None, "DNI_PUBLIC_URL is not set: carriers could not reach the callback's prompt"
    twilio = settings.twilio_account_sid and settings.twilio_auth_token
    telnyx = settings.telnyx_api_key and own.telnyx_connection_id
    carrier = own.carrier or ("twilio" if twilio else "telnyx" if telnyx else None)
    if carrier == "twilio" and twilio:
        return TwilioDialer(settings.twilio_account_sid, settings.twilio_auth_token,
                            settings.public_url, own.twilio_api_url), None
    if carrier == "telnyx" and telnyx:
        return TelnyxDialer(settings.telnyx_api_url, settings.telnyx_api_key,
                            own.telnyx_connection_id, settings.public_url), None
    return None, ("no carrier for callbacks: set DNI_TWILIO_ACCOUNT_SID and "
                  "DNI_TWILIO_AUTH_TOKEN, or DNI_TELNYX_API_KEY and DNI_TELNYX_CONNECTION_ID")


class CallbackStep:
    def __init__(self, app):
        from dni_server.api.callbacks import business_router

        self.services = app.extensions["dni"]
        self.router = business_router(app)
        self.own = app.extensions["dni_callbacks"]
        self.dialer, self.why_not = make_dialer(self.services.settings, self.own.settings)
        self._warned = False

    def run_once(self, now=None) -> int:
        if self.dialer is None:
            if not self._warned:
                log.warning("web callbacks wait: %s", self.why_not)
                self._warned = True
            return 0
        return run_due(self.services.session_factory, self.dialer, self.own.settings,
                       self.own.limits, now or utcnow(), self.router)
