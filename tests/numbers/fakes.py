"""Strict local stand-ins for Twilio's and Telnyx's number APIs, real HTTP servers in threads.

Each fake checks every request it gets: the path, the method, the authentication (Twilio:
HTTP Basic with the account SID and auth token; Telnyx: a Bearer API key), and the exact
set of parameters or JSON fields, each value's shape. A request it does not expect is
answered with the carrier's own error shape and recorded in ``violations`` (a test asserts
it stays empty). Both keep an inventory of numbers for sale and the numbers the account
owns, so buying, looking up and releasing are checked against a state, not canned answers.

Faults: ``fail_next(kind, n, status)`` answers the next n requests of a kind (``search``,
``buy``, ``lookup``, ``release``, ``check``, ``order``) with that status; ``hang_next(kind,
n, seconds)`` holds them that long before answering (a client time-out); Telnyx's
``pending_polls`` keeps each new order ``pending`` for that many reads (a slow confirm).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from urllib.parse import parse_qs

from fake_server import ThreadedServer
from werkzeug.wrappers import Request, Response

from factories import numbers

PUBLIC_URL = "https://dni.example"  # the service's DNI_PUBLIC_URL in these tests
# For sale: 415 numbers first (the area searched), then others.
FOR_SALE = numbers(6, start=120, area="415") + numbers(3, start=140, area="212")
TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "twiliotoken0123456789abcdef"
TELNYX_KEY = "KEY0123456789ABCDEF_telnyx"
TELNYX_CONNECTION = "1684641123236054244"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Fake(ThreadedServer):
    """A threaded werkzeug server with fault injection and a request log."""

    def __init__(self, available: list[str]):
        self.available = list(available)  # numbers for sale, in the order searches list them
        self.owned: dict[str, dict] = {}  # number -> the carrier's record of it
        self.requests: list[dict] = []
        self.violations: list[str] = []
        self._faults: dict[str, list[tuple[int, float]]] = {}
        self._lock = threading.Lock()

    # -- faults -------------------------------------------------------------------------

    def fail_next(self, kind: str, n: int = 1, status: int = 503) -> None:
        self._faults.setdefault(kind, []).extend([(status, 0.0)] * n)

    def hang_next(self, kind: str, n: int = 1, seconds: float = 2.0, status: int = 0) -> None:
        """Hold the next n requests of ``kind``; ``status`` 0 then serves them normally (the
        carrier did the work, the client gave up waiting)."""
        self._faults.setdefault(kind, []).extend([(status, seconds)] * n)

    def _fault(self, kind: str) -> tuple[int, float] | None:
        with self._lock:
            queue = self._faults.get(kind)
            return queue.pop(0) if queue else None

    def count(self, kind: str) -> int:
        return sum(1 for r in self.requests if r["kind"] == kind)

    def violation(self, text: str) -> None:
        self.violations.append(text)

    # -- dispatch -----------------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        kind, handler, args = self.route(request)
        self.requests.append({"kind": kind, "method": request.method, "path": request.path,
                              "query": request.query_string.decode(),
                              "body": request.get_data(as_text=True)})
        if handler is None:
            self.violation(f"unexpected {request.method} {request.path}")
            return self.error(404, "not found")(environ, start_response)
        problem = self.authenticate(request)
        if problem:
            return self.error(401, problem)(environ, start_response)
        fault = self._fault(kind)
        if fault:
            status, hold = fault
            if hold:
                time.sleep(hold)
            if status:
                return self.error(status, "injected fault")(environ, start_response)
        return handler(request, *args)(environ, start_response)

    def route(self, request):  # pragma: no cover - subclasses
        raise NotImplementedError

    def authenticate(self, request) -> str | None:  # pragma: no cover - subclasses
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:  # pragma: no cover
        raise NotImplementedError

    def take(self, number: str) -> bool:
        with self._lock:
            if number not in self.available:
                return False
            self.available.remove(number)
            return True


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


# -- Twilio ----------------------------------------------------------------------------------


class TwilioFake(Fake):
    """Twilio's 2010-04-01 API: Accounts, AvailablePhoneNumbers, IncomingPhoneNumbers."""

    SEARCH_PARAMS = {"AreaCode", "Contains", "InRegion", "VoiceEnabled", "PageSize"}
    BUY_FIELDS = {"PhoneNumber", "VoiceUrl", "VoiceMethod", "StatusCallback",
                  "StatusCallbackMethod"}

    def __init__(self, available: list[str], *, sid: str = TWILIO_SID,
                 token: str = TWILIO_TOKEN, voice_url: str | None = None,
                 status_url: str | None = None):
        super().__init__(available)
        self.sid, self.token = sid, token
        self.voice_url, self.status_url = voice_url, status_url  # expected, when set

    @property
    def url(self) -> str:
        return self.base

    def route(self, request):
        prefix = f"/2010-04-01/Accounts/{self.sid}"
        path, method = request.path, request.method
        if path == prefix + ".json" and method == "GET":
            return "check", self.account, ()
        if m := re.fullmatch(re.escape(prefix) + r"/AvailablePhoneNumbers/([A-Z]{2})/"
                             r"(Local|TollFree)\.json", path):
            if method == "GET":
                return "search", self.search, m.groups()
        if path == prefix + "/IncomingPhoneNumbers.json":
            if method == "POST":
                return "buy", self.buy, ()
            if method == "GET":
                return "lookup", self.lookup, ()
        if m := re.fullmatch(re.escape(prefix) + r"/IncomingPhoneNumbers/(PN[0-9a-f]{32})\.json",
                             path):
            if method == "DELETE":
                return "release", self.release, m.groups()
        return "unknown", None, ()

    def authenticate(self, request) -> str | None:
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return "Authenticate"
        return None

    def error(self, status: int, message: str) -> Response:
        codes = {401: 20003, 404: 20404, 400: 21422, 429: 20429}
        return _json({"code": codes.get(status, 20500), "message": message,
                      "more_info": "https://www.twilio.com/docs/errors", "status": status},
                     status)

    def account(self, request) -> Response:
        return _json({"sid": self.sid, "friendly_name": "Fake account", "status": "active",
                      "type": "Full"})

    def search(self, request, country: str, kind: str) -> Response:
        params = {k: v[0] for k, v in parse_qs(request.query_string.decode()).items()}
        if set(params) - self.SEARCH_PARAMS:
            self.violation(f"search: unexpected parameters {sorted(set(params) - self.SEARCH_PARAMS)}")
        if params.get("VoiceEnabled") != "true":
            self.violation("search: VoiceEnabled=true missing")
        area = params.get("AreaCode")
        if area is not None and not re.fullmatch(r"[0-9]{3}", area):
            self.violation(f"search: AreaCode {area!r}")
        size = int(params.get("PageSize", "50"))
        toll_free = kind == "TollFree"
        found = [n for n in self.available
                 if n.startswith("+1") and (n[2:5] in ("800", "888", "877")) == toll_free
                 and (area is None or n[2:5] == area)
                 and (not params.get("Contains") or params["Contains"].replace("*", "")
                      in n)]
        return _json({"available_phone_numbers": [
            {"friendly_name": f"({n[2:5]}) {n[5:8]}-{n[8:]}", "phone_number": n,
             "locality": "San Francisco", "region": "CA", "iso_country": country,
             "capabilities": {"voice": True, "SMS": True, "MMS": True}, "beta": False}
            for n in found[:size]], "uri": request.full_path, "end": 0,
            "next_page_uri": None})

    def buy(self, request) -> Response:
        form = {k: v for k, v in request.form.items()}
        if set(form) != self.BUY_FIELDS:
            self.violation(f"buy: fields {sorted(form)}")
        if form.get("VoiceMethod") != "POST" or form.get("StatusCallbackMethod") != "POST":
            self.violation("buy: methods must be POST")
        for name, expected in (("VoiceUrl", self.voice_url),
                               ("StatusCallback", self.status_url)):
            if expected is not None and form.get(name) != expected:
                self.violation(f"buy: {name} {form.get(name)!r} != {expected!r}")
        number = form.get("PhoneNumber", "")
        if not E164.match(number):
            self.violation(f"buy: PhoneNumber {number!r}")
        if not self.take(number):
            return self.error(400, f"+{number} is not available")
        record = {"sid": "PN" + uuid.uuid4().hex, "account_sid": self.sid,
                  "phone_number": number, "voice_url": form.get("VoiceUrl"),
                  "status_callback": form.get("StatusCallback"),
                  "friendly_name": number, "capabilities": {"voice": True}}
        self.owned[number] = record
        return _json(record, 201)

    def lookup(self, request) -> Response:
        params = {k: v[0] for k, v in parse_qs(request.query_string.decode()).items()}
        if set(params) - {"PhoneNumber", "PageSize"}:
            self.violation(f"lookup: parameters {sorted(params)}")
        number = params.get("PhoneNumber")
        found = [r for n, r in self.owned.items() if number is None or n == number]
        return _json({"incoming_phone_numbers": found, "uri": request.full_path,
                      "next_page_uri": None})

    def release(self, request, sid: str) -> Response:
        number = next((n for n, r in self.owned.items() if r["sid"] == sid), None)
        if number is None:
            return self.error(404, f"The requested resource {request.path} was not found")
        del self.owned[number]
        return Response(status=204)


# -- Telnyx ----------------------------------------------------------------------------------


class TelnyxFake(Fake):
    """Telnyx's v2 API: connections, available_phone_numbers, number_orders, phone_numbers."""

    SEARCH_PARAMS = {"filter[country_code]", "filter[features][]", "filter[limit]",
                     "filter[phone_number_type]", "filter[national_destination_code]",
                     "filter[phone_number][contains]", "filter[administrative_area]"}

    def __init__(self, available: list[str], *, key: str = TELNYX_KEY,
                 connection: str = TELNYX_CONNECTION, pending_polls: int = 0):
        super().__init__(available)
        self.key, self.connection = key, connection
        self.pending_polls = pending_polls
        self.orders: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return self.base + "/v2"

    def route(self, request):
        path, method = request.path, request.method
        if m := re.fullmatch(r"/v2/connections/([^/]+)", path):
            if method == "GET":
                return "check", self.connection_info, m.groups()
        if path == "/v2/available_phone_numbers" and method == "GET":
            return "search", self.search, ()
        if path == "/v2/number_orders" and method == "POST":
            return "buy", self.order, ()
        if m := re.fullmatch(r"/v2/number_orders/([0-9a-f-]{36})", path):
            if method == "GET":
                return "order", self.order_status, m.groups()
        if path == "/v2/phone_numbers" and method == "GET":
            return "lookup", self.lookup, ()
        if m := re.fullmatch(r"/v2/phone_numbers/([0-9]+)", path):
            if method == "DELETE":
                return "release", self.release, m.groups()
        return "unknown", None, ()

    def authenticate(self, request) -> str | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return "Authentication failed"
        return None

    def error(self, status: int, message: str) -> Response:
        titles = {401: "Authentication failed", 404: "Resource not found",
                  422: "Invalid parameter", 429: "Too many requests"}
        return _json({"errors": [{"code": str(10000 + status), "title":
                                  titles.get(status, "Service unavailable"),
                                  "detail": message}]}, status)

    def connection_info(self, request, connection_id: str) -> Response:
        if connection_id != self.connection:
            return self.error(404, "connection not found")
        return _json({"data": {"id": self.connection, "record_type": "ip_connection",
                               "connection_name": "dni tracking", "active": True}})

    def search(self, request) -> Response:
        pairs = parse_qs(request.query_string.decode())
        if set(pairs) - self.SEARCH_PARAMS:
            self.violation(f"search: unexpected parameters {sorted(set(pairs) - self.SEARCH_PARAMS)}")
        params = {k: v[0] for k, v in pairs.items()}
        if params.get("filter[features][]") != "voice":
            self.violation("search: filter[features][]=voice missing")
        toll_free = params.get("filter[phone_number_type]") == "toll_free"
        area = params.get("filter[national_destination_code]")
        contains = params.get("filter[phone_number][contains]")
        limit = int(params.get("filter[limit]", "50"))
        found = [n for n in self.available
                 if (n[2:5] in ("800", "888", "877")) == toll_free
                 and (area is None or n[2:5] == area) and (not contains or contains in n[-4:])]
        return _json({"data": [
            {"record_type": "available_phone_number", "phone_number": n,
             "region_information": [{"region_type": "rate_center", "region_name": "SAN FRANCISCO"},
                                    {"region_type": "state", "region_name": "CA"},
                                    {"region_type": "country_code", "region_name": "US"}],
             "features": [{"name": "voice"}, {"name": "sms"}], "reservable": True,
             "quickship": True, "best_effort": False}
            for n in found[:limit]], "metadata": {"total_results": len(found)}})

    def order(self, request) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError:
            self.violation("order: body is not JSON")
            return self.error(422, "invalid JSON")
        if request.mimetype != "application/json":
            self.violation(f"order: content type {request.mimetype}")
        if set(body) != {"phone_numbers", "connection_id"}:
            self.violation(f"order: fields {sorted(body)}")
        if body.get("connection_id") != self.connection:
            self.violation(f"order: connection_id {body.get('connection_id')!r}")
        wanted = body.get("phone_numbers") or []
        if len(wanted) != 1 or set(wanted[0]) != {"phone_number"}:
            self.violation(f"order: phone_numbers {wanted!r}")
        number = wanted[0].get("phone_number", "") if wanted else ""
        if not self.take(number):
            return self.error(422, f"{number} is not available")
        order_id = str(uuid.uuid4())
        self.orders[order_id] = {"number": number, "polls_left": self.pending_polls}
        if not self.pending_polls:
            self._confirm(order_id)
        return _json({"data": self._order_view(order_id)})

    def _confirm(self, order_id: str) -> None:
        number = self.orders[order_id]["number"]
        self.owned[number] = {"id": str(uuid.uuid4().int % 10**18), "phone_number": number,
                              "connection_id": self.connection, "status": "active",
                              "record_type": "phone_number"}

    def _order_view(self, order_id: str) -> dict:
        order = self.orders[order_id]
        status = "pending" if order["polls_left"] > 0 else "success"
        return {"id": order_id, "record_type": "number_order", "status": status,
                "connection_id": self.connection, "phone_numbers_count": 1,
                "phone_numbers": [{"id": str(uuid.uuid4()), "phone_number": order["number"],
                                   "status": status}]}

    def confirm_all(self) -> None:
        """Confirm every pending order now (the carrier caught up)."""
        for order_id, order in self.orders.items():
            if order["polls_left"] > 0:
                order["polls_left"] = 0
                self._confirm(order_id)

    def order_status(self, request, order_id: str) -> Response:
        order = self.orders.get(order_id)
        if order is None:
            return self.error(404, "order not found")
        if order["polls_left"] > 0:
            order["polls_left"] -= 1
            if order["polls_left"] == 0:
                self._confirm(order_id)
        return _json({"data": self._order_view(order_id)})

    def lookup(self, request) -> Response:
        params = {k: v[0] for k, v in parse_qs(request.query_string.decode()).items()}
        if set(params) != {"filter[phone_number]"}:
            self.violation(f"lookup: parameters {sorted(params)}")
        number = params.get("filter[phone_number]")
        return _json({"data": [r for n, r in self.owned.items() if n == number],
                      "meta": {"total_results": int(number in self.owned)}})

    def release(self, request, number_id: str) -> Response:
        number = next((n for n, r in self.owned.items() if r["id"] == number_id), None)
        if number is None:
            return self.error(404, "phone number not found")
        record = self.owned.pop(number)
        return _json({"data": {**record, "status": "deleted"}})
