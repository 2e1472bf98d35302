"""Placing a callback's calls through a carrier's REST API.

Twilio: ``Calls.create`` (the twilio library) rings the business with a TwiML URL; the
TwiML asks for 1 and then dials the visitor with answering-machine detection on the
``<Number>`` (``machineDetection``), whose ``url`` hears the verdict before the bridge.
Telnyx: Call Control ``dial`` (``POST /v2/calls``) rings the business; the webhooks then
drive ``gather_using_speak``, a second ``dial`` to the visitor with
``answering_machine_detection``, and ``bridge``. ``client_state`` names the callback and
the leg on every Telnyx event.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from urllib.parse import quote

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

log = logging.getLogger(__name__)


class DialError(Exception):
    """The carrier did not place the call; ``retry`` when trying again may help."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class BusinessLeg:
    """What placing the business's leg needs: who, from which number, and for which
    callback (its id names it in every webhook)."""

    callback_id: str
    business: str
    caller_id: str  # the tracking number
    timeout: int


class TwilioDialer:
    """Rings the business through Twilio's REST API; the TwiML is served by the app."""

    carrier = "twilio"

    def __init__(self, account_sid: str, auth_token: str, public_url: str,
                 api_url: str = "https://api.twilio.com"):
        self.client = Client(account_sid, auth_token,
                             http_client=TwilioHttpClient(timeout=10))
        self.client.api.base_url = api_url.rstrip("/")
        self.public_url = public_url.rstrip("/")

    def url(self, step: str, callback_id: str, **extra: str) -> str:
        query = "&".join([f"cb={quote(callback_id)}"] + [f"{k}={quote(v)}" for k, v in extra.items()])
        return f"{self.public_url}/webhooks/callbacks/twilio/{step}?{query}"

    def call_business(self, leg: BusinessLeg) -> str:
        try:
            call = self.client.calls.create(
                to=leg.business, from_=leg.caller_id, url=self.url("business", leg.callback_id),
                method="POST", timeout=leg.timeout,
                status_callback=self.url("status", leg.callback_id, leg="business"),
                status_callback_event=["completed"], status_callback_method="POST")
        except TwilioException as exc:
            status = getattr(exc, "status", None)
            raise DialError(f"Twilio refused the call: {exc}",
                            retry=status is None or status == 429 or status >= 500) from None
        except requests.RequestException as exc:
            raise DialError(f"Twilio did not answer: {exc}") from None
        return call.sid


def telnyx_state(callback_id: str, leg: str) -> str:
    """``client_state``: base64 of "cb:<callback id>:<leg>" (Telnyx echoes it back)."""
    return base64.b64encode(f"cb:{callback_id}:{leg}".encode()).decode()


def read_telnyx_state(value: str | None) -> tuple[str, str] | None:
    """(callback id, leg) from a ``client_state``, or None if it is not one of ours."""
    try:
        text = base64.b64decode(value or "", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = text.split(":")
    if len(parts) != 3 or parts[0] != "cb" or parts[2] not in ("business", "visitor"):
        return None
    return parts[1], parts[2]


class TelnyxDialer:
    """Telnyx Call Control commands for a callback's two legs."""

    carrier = "telnyx"

    def __init__(self, api_url: str, api_key: str, connection_id: str, public_url: str):
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.connection_id = connection_id
        self.webhook_url = public_url.rstrip("/") + "/webhooks/callbacks/telnyx"

    def _post(self, path: str, body: dict) -> dict:
        try:
            response = requests.post(f"{self.api_url}{path}", json=body, timeout=10,
                                     headers={"Authorization": f"Bearer {self.api_key}"})
        except requests.RequestException as exc:
            raise DialError(f"Telnyx did not answer: {exc}") from None
        if response.status_code >= 300:
            raise DialError(f"Telnyx answered {response.status_code}: {response.text[:300]}",
                            retry=response.status_code == 429 or response.status_code >= 500)
        try:
            return response.json()
        except ValueError:
            return {}

    def dial(self, to: str, caller_id: str, callback_id: str, leg: str, timeout: int,
             *, detect_machine: bool = False, link_to: str | None = None,
             command_id: str | None = None) -> str:
        body = {"connection_id": self.connection_id, "to": to, "from": caller_id,
                "webhook_url": self.webhook_url, "webhook_url_method": "POST",
                "client_state": telnyx_state(callback_id, leg), "timeout_secs": timeout}
        if detect_machine:
            body["answering_machine_detection"] = "detect"
        if link_to:
            body["link_to"] = link_to
        if command_id:
            body["command_id"] = command_id
        data = self._post("/calls", body).get("data") or {}
        control_id = data.get("call_control_id")
        if not isinstance(control_id, str) or not control_id:
            raise DialError("Telnyx answered without a call_control_id", retry=False)
        return control_id

    def call_business(self, leg: BusinessLeg) -> str:
        return self.dial(leg.business, leg.caller_id, leg.callback_id, "business", leg.timeout,
                         command_id=f"{leg.callback_id}-business")

    def action(self, control_id: str, name: str, body: dict) -> None:
        segment = quote(control_id, safe=":")
        if segment in (".", ".."):
            raise DialError(f"{control_id!r} is not a call control id", retry=False)
        self._post(f"/calls/{segment}/actions/{name}", body)
