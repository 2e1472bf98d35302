"""The carriers' number APIs: search, buy, look up and release numbers, check credentials.

Twilio's REST API goes through the twilio library (its base URL set for a region, a proxy or
a local stand-in); Telnyx's v2 API through requests. Both answer the same small interface,
``NumberApi``, and raise ``CarrierError`` for anything that is not what was asked: a refusal
(``status`` 4xx, ``retry`` False), an outage or a time-out (``retry`` True).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO_API_URL = "https://api.twilio.com"
TELNYX_API_URL = "https://api.telnyx.com/v2"
TIMEOUT_SECONDS = 10


class CarrierError(Exception):
    """The carrier did not do what was asked; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retry: bool = False,
                 order: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry = retry
        self.order = order  # an order the carrier may still confirm (Telnyx)


@dataclass(frozen=True)
class SearchQuery:
    country: str = "US"
    area_code: str | None = None
    contains: str | None = None
    region: str | None = None  # a US state or CA province ("CA", "ON")
    toll_free: bool = False
    limit: int = 20


@dataclass(frozen=True)
class Available:
    number: str
    locality: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Bought:
    """A number the carrier confirmed is ours: ``ref`` names it for a later release."""

    number: str
    ref: str
    order: str | None = None


@dataclass(frozen=True)
class Webhooks:
    """Where the carrier sends a bought number's calls (Twilio sets them per number)."""

    voice_url: str
    status_url: str


@dataclass
class NumberApi:
    """What provisioning needs of a carrier."""

    def check(self) -> str:  # pragma: no cover - interface
        """A short description of the account if the credentials work; CarrierError if not."""
        raise NotImplementedError

    def search(self, query: SearchQuery) -> list[Available]:  # pragma: no cover
        raise NotImplementedError

    def buy(self, number: str, hooks: Webhooks) -> Bought:  # pragma: no cover
        raise NotImplementedError

    def owned(self, number: str) -> Bought | None:  # pragma: no cover
        """The number as the account holds it, or None: what a crash left unknown."""
        raise NotImplementedError

    def release(self, bought: Bought) -> None:  # pragma: no cover
        raise NotImplementedError

    def pending(self, order: str) -> bool:
        """Whether an order may still be confirmed (only Telnyx confirms later)."""
        return False


# -- Twilio ------------------------------------------------------------------------------


@dataclass
class TwilioNumbers(NumberApi):
    account_sid: str
    auth_token: str
    api_url: str = TWILIO_API_URL
    timeout: float = TIMEOUT_SECONDS
    client: Client = field(init=False, repr=False)

    def __post_init__(self):
        self.client = Client(self.account_sid, self.auth_token,
                             http_client=TwilioHttpClient(timeout=self.timeout))
        self.client.api.base_url = self.api_url.rstrip("/")

    def _call(self, fn: Callable):
        try:
            return fn()
        except TwilioRestException as exc:
            raise CarrierError(f"Twilio: {exc.msg} (code {exc.code})", status=exc.status,
                               retry=exc.status == 429 or exc.status >= 500) from None
        except (TwilioException, requests.RequestException) as exc:
            raise CarrierError(f"Twilio unreachable: {type(exc).__name__}", retry=True) \
                from None

    def check(self) -> str:
        account = self._call(lambda: self.client.api.v2010.accounts(self.account_sid).fetch())
        return f"{account.friendly_name} ({account.status})"

    def search(self, query: SearchQuery) -> list[Available]:
        country = self.client.api.v2010.accounts(self.account_sid) \
            .available_phone_numbers(query.country)
        kind = country.toll_free if query.toll_free else country.local
        params = {"voice_enabled": True, "limit": query.limit, "page_size": query.limit}
        if query.area_code:
            params["area_code"] = int(query.area_code)
        if query.contains:
            params["contains"] = query.contains
        if query.region:
            params["in_region"] = query.region
        found = self._call(lambda: kind.list(**params))
        return [Available(n.phone_number, n.locality, n.region) for n in found]

    def buy(self, number: str, hooks: Webhooks) -> Bought:
        made = self._call(lambda: self.client.api.v2010.accounts(self.account_sid)
                          .incoming_phone_numbers.create(
                              phone_number=number, voice_url=hooks.voice_url,
                              voice_method="POST", status_callback=hooks.status_url,
                              status_callback_method="POST"))
        return Bought(made.phone_number, made.sid)

    def owned(self, number: str) -> Bought | None:
        found = self._call(lambda: self.client.api.v2010.accounts(self.account_sid)
                           .incoming_phone_numbers.list(phone_number=number, limit=5))
        match = next((n for n in found if n.phone_number == number), None)
        return Bought(match.phone_number, match.sid) if match else None

    def release(self, bought: Bought) -> None:
        self._call(lambda: self.client.api.v2010.accounts(self.account_sid)
                   .incoming_phone_numbers(bought.ref).delete())


# -- Telnyx ------------------------------------------------------------------------------


@dataclass
class TelnyxNumbers(NumberApi):
    api_key: str
    connection_id: str
    api_url: str = TELNYX_API_URL
    timeout: float = TIMEOUT_SECONDS
    # An order is confirmed asynchronously: how long to wait for it, and how often to look.
    confirm_seconds: float = 30.0
    poll_seconds: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    http: requests.Session = field(default_factory=requests.Session, repr=False)

    def _request(self, method: str, path: str, **kwargs) -> dict:
        url = self.api_url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        try:
            response = self.http.request(method, url, headers=headers, timeout=self.timeout,
                                         **kwargs)
        except requests.RequestException as exc:
            raise CarrierError(f"Telnyx unreachable: {type(exc).__name__}", retry=True) \
                from None
        if response.status_code >= 400:
            raise CarrierError(f"Telnyx: {_telnyx_error(response)}",
                               status=response.status_code,
                               retry=response.status_code == 429 or response.status_code >= 500)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CarrierError("Telnyx answered something that is not JSON", retry=True) \
                from None

    def check(self) -> str:
        found = self._request("GET", f"/connections/{self.connection_id}")
        data = found.get("data") or {}
        return f"connection {data.get('connection_name') or self.connection_id}"

    def search(self, query: SearchQuery) -> list[Available]:
        params = [("filter[country_code]", query.country),
                  ("filter[features][]", "voice"), ("filter[limit]", str(query.limit))]
        if query.toll_free:
            params.append(("filter[phone_number_type]", "toll_free"))
        if query.area_code:
            params.append(("filter[national_destination_code]", query.area_code))
        if query.contains:
            params.append(("filter[phone_number][contains]", query.contains))
        if query.region:
            params.append(("filter[administrative_area]", query.region))
        found = self._request("GET", "/available_phone_numbers", params=params)
        out = []
        for item in found.get("data") or []:
            places = {r.get("region_type"): r.get("region_name")
                      for r in item.get("region_information") or []}
            out.append(Available(item["phone_number"], places.get("location") or
                                 places.get("rate_center"), places.get("state")))
        return out

    def buy(self, number: str, hooks: Webhooks) -> Bought:
        """Order the number on the account's connection (which points at this service's
        webhook) and wait for the order to be confirmed."""
        made = self._request("POST", "/number_orders", json={
            "phone_numbers": [{"phone_number": number}], "connection_id": self.connection_id})
        order = made.get("data") or {}
        waited = 0.0
        while order.get("status") == "pending":
            if waited >= self.confirm_seconds:
                raise CarrierError(f"Telnyx order {order.get('id')} still pending after "
                                   f"{self.confirm_seconds:g} s", retry=True,
                                   order=order.get("id"))
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds
            order = self._request("GET", f"/number_orders/{order['id']}").get("data") or {}
        if order.get("status") != "success":
            raise CarrierError(f"Telnyx order {order.get('id')} {order.get('status')}")
        owned = self.owned(number)
        if owned is None:
            raise CarrierError(f"Telnyx order {order.get('id')} succeeded but {number} is not "
                               "on the account", retry=True)
        return Bought(owned.number, owned.ref, order.get("id"))

    def pending(self, order: str) -> bool:
        found = self._request("GET", f"/number_orders/{order}").get("data") or {}
        return found.get("status") == "pending"

    def owned(self, number: str) -> Bought | None:
        found = self._request("GET", "/phone_numbers",
                              params=[("filter[phone_number]", number)])
        match = next((n for n in found.get("data") or [] if n.get("phone_number") == number),
                     None)
        return Bought(number, str(match["id"])) if match else None

    def release(self, bought: Bought) -> None:
        self._request("DELETE", f"/phone_numbers/{bought.ref}")


def _telnyx_error(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('title')}: {first.get('detail')} ({response.status_code})"
    except (ValueError, AttributeError, IndexError, TypeError):
        return f"HTTP {response.status_code}"
