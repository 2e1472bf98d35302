"""Strict local stand-ins for the four platforms, on 127.0.0.1 free ports.

Each receiver checks every field it is sent (names, types, time formats, hash formats,
click-id exclusivity, limits, credentials) and answers the way its platform does, including
its error shapes. Use one like this::

    with GoogleReceiver() as google:             # or the fixtures in conftest.py
        destination = build_destination("google", google.config())
        ... deliver(destination, convs, now, session) ...
        assert google.errors == []               # nothing malformed was sent
        assert [e["transactionId"] for e in google.events()] == [...]

API shared by all receivers:

- ``url``: base URL; ``config(**overrides)``: a destination config mapping pointing here.
- ``requests``: every request seen (dict: method, path, query, headers, body bytes).
- ``received``: parsed bodies the platform accepted (ingested); ``events()``: their events.
- ``errors``: every strictness violation found (a test should assert it is empty).
- ``fail_next(n, status=503, headers=None, body=None)``: the next n requests get that answer.
- ``clock``: a callable returning "now" (aware UTC) for age limits; set it when the test
  freezes time.
- ``token_requests``: how many OAuth refreshes were made at ``/token``.

Platform extras: ``GoogleReceiver.reject(ids, name_events=True)`` answers 400 naming the
events with those transactionIds; ``MicrosoftReceiver.goals`` (set of goal names: any other
name gets ``OfflineConversionNameInvalid``) and ``MicrosoftReceiver.fault_next(n, code,
error_code)``; ``GA4Receiver.validated`` (bodies posted to the debug endpoint).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import uuid
import xml.etree.ElementTree as ET

from fake_server import ThreadedServer
from werkzeug.wrappers import Request, Response

STATIC_TOKEN = "static-access-token-0123456789"
CLIENT_ID = "client-id-42"
CLIENT_SECRET = "client-secret-0123456789"
REFRESH_TOKEN = "refresh-token-0123456789"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_rfc3339(text: str) -> dt.datetime | None:
    if not isinstance(text, str) or not RFC3339.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Receiver(ThreadedServer):
    """A threaded werkzeug server; subclasses implement ``handle``."""

    kind = ""

    def __init__(self, clock=None):
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.requests: list[dict] = []
        self.received: list = []
        self.errors: list[str] = []
        self.token_requests = 0
        self.valid_tokens = {STATIC_TOKEN}
        self._script: list[tuple[int, dict, bytes | None]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.base

    # -- scripting ---------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 503, headers: dict | None = None,
                  body: bytes | str | None = None) -> None:
        body = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._script.extend([(status, dict(headers or {}), body)] * n)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.received.clear()
            self.errors.clear()
            self._script.clear()

    def events(self) -> list:
        raise NotImplementedError

    def config(self, **overrides) -> dict:
        raise NotImplementedError

    # -- plumbing ----------------------------------------------------------------------
    def _wsgi(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        with self._lock:
            self.requests.append({"method": request.method, "path": request.path,
                                  "query": request.args.to_dict(), "headers": dict(request.headers),
                                  "body": body})
            scripted = self._script.pop(0) if self._script else None
            if scripted:
                status, headers, answer = scripted
                response = Response(answer if answer is not None else self.failure_body(status),
                                    status=status, headers=headers,
                                    content_type=self.failure_type)
            elif request.path == "/token":
                response = self._token(request)
            else:
                response = self.handle(request, body)
        return response(environ, start_response)

    failure_type = "application/json"

    def failure_body(self, status: int) -> bytes:
        return json.dumps({"error": {"code": status, "message": "scripted failure"}}).encode()

    def problem(self, text: str) -> None:
        self.errors.append(f"{self.kind}: {text}")

    def _token(self, request: Request) -> Response:
        """An OAuth 2.0 token endpoint: the refresh_token grant only."""
        self.token_requests += 1
        form = request.form
        if (request.method != "POST" or form.get("grant_type") != "refresh_token"
                or form.get("client_id") != CLIENT_ID or form.get("refresh_token") != REFRESH_TOKEN
                or form.get("client_secret") != CLIENT_SECRET):
            self.problem(f"bad token request: {sorted(form.keys())}")
            return Response(json.dumps({"error": "invalid_grant"}), 400, content_type="application/json")
        token = f"access-{uuid.uuid4().hex}"
        self.valid_tokens.add(token)
        return Response(json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}),
                        200, content_type="application/json")

    def handle(self, request: Request, body: bytes) -> Response:
        raise NotImplementedError


# -- Google Data Manager ----------------------------------------------------------------------


class GoogleReceiver(Receiver):
    kind = "google"
    REQUEST_KEYS = {"destinations", "events", "consent", "validateOnly", "encoding", "encryptionInfo"}
    EVENT_KEYS = {"transactionId", "eventTimestamp", "eventSource", "adIdentifiers", "conversionValue",
                  "currency", "userData", "consent", "customVariables", "lastUpdatedTimestamp",
                  "destinationReferences"}
    CONSENT_VALUES = {"CONSENT_GRANTED", "CONSENT_DENIED", "CONSENT_STATUS_UNSPECIFIED"}

    def __init__(self, clock=None, operating_account="1234567890", conversion_action="555000111"):
        super().__init__(clock)
        self.operating_account = operating_account
        self.conversion_action = conversion_action
        self.validated: list[dict] = []
        self._rejected: set[str] = set()
        self._name_events = True

    def reject(self, transaction_ids, name_events: bool = True) -> None:
        """Events with these transactionIds fail validation (the whole request is rejected)."""
        self._rejected = set(transaction_ids)
        self._name_events = name_events

    def events(self) -> list[dict]:
        return [e for body in self.received for e in body["events"]]

    def config(self, **overrides) -> dict:
        return {"base_url": self.url, "operating_account_id": self.operating_account,
                "conversion_action_id": self.conversion_action, "access_token": STATIC_TOKEN,
                **overrides}

    def refresh_config(self, **overrides) -> dict:
        """Config that refreshes its access token at this receiver's /token."""
        return {"base_url": self.url, "operating_account_id": self.operating_account,
                "conversion_action_id": self.conversion_action, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN,
                "token_url": self.url + "/token", **overrides}

    def _error(self, status: int, code: str, message: str, violations=(), reason="INVALID_ARGUMENT"):
        details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                    "domain": "datamanager.googleapis.com"}]
        if violations:
            details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [{"field": f, "description": d} for f, d in violations]})
        body = {"error": {"code": status, "status": code, "message": message, "details": details}}
        return Response(json.dumps(body), status, content_type="application/json")

    def handle(self, request: Request, body: bytes) -> Response:
        if request.path != "/v1/events:ingest" or request.method != "POST":
            self.problem(f"unexpected {request.method} {request.path}")
            return self._error(404, "NOT_FOUND", "not found")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_tokens:
            self.problem("missing or invalid bearer token")
            return self._error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.",
                               reason="ACCESS_TOKEN_TYPE_UNSUPPORTED")
        if "developer-token" in {k.lower() for k in request.headers.keys()}:
            self.problem("a developer token was sent (Data Manager takes none)")
        if not request.mimetype == "application/json":
            self.problem(f"content type {request.mimetype}")
        try:
            data = json.loads(body)
        except ValueError:
            self.problem("body is not JSON")
            return self._error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        violations = self.validate(data)
        if violations:
            self.errors.extend(f"google: {f}: {d}" for f, d in violations)
            return self._error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", violations,
                               reason="INVALID_FORMAT")
        bad = [i for i, e in enumerate(data["events"]) if e["transactionId"] in self._rejected]
        if bad:
            violations = [(f"events[{i}].adIdentifiers.gclid", "invalid click id")
                          for i in bad] if self._name_events else []
            return self._error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                               violations, reason="INVALID_FORMAT")
        if data.get("validateOnly"):
            self.validated.append(data)
            return Response("{}", 200, content_type="application/json")
        self.received.append(data)
        return Response(json.dumps({"requestId": str(uuid.uuid4())}), 200, content_type="application/json")

    def validate(self, data) -> list[tuple[str, str]]:
        v: list[tuple[str, str]] = []
        if not isinstance(data, dict):
            return [("", "body must be an object")]
        for key in set(data) - self.REQUEST_KEYS:
            v.append((key, "unknown field"))
        destinations = data.get("destinations")
        if not isinstance(destinations, list) or not 1 <= len(destinations) <= 10:
            v.append(("destinations", "1 to 10 destinations required"))
        else:
            for i, d in enumerate(destinations):
                v.extend((f"destinations[{i}].{f}", m) for f, m in self._destination(d))
        if "validateOnly" in data and not isinstance(data["validateOnly"], bool):
            v.append(("validateOnly", "must be a boolean"))
        consent = data.get("consent")
        if consent is not None:
            v.extend(("consent." + f, m) for f, m in self._consent(consent))
        events = data.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= 2000:
            v.append(("events", "1 to 2000 events required"))
            return v
        encoding = data.get("encoding")
        if any(isinstance(e, dict) and "userData" in e for e in events) and encoding not in ("HEX", "BASE64"):
            v.append(("encoding", "HEX or BASE64 required with userData"))
        ids = [e.get("transactionId") for e in events if isinstance(e, dict)]
        if len(set(ids)) != len(ids):
            v.append(("events", "duplicate transactionId in one request"))
        for i, e in enumerate(events):
            v.extend((f"events[{i}].{f}", m) for f, m in self._event(e, encoding))
        return v

    def _destination(self, d) -> list[tuple[str, str]]:
        v = []
        if not isinstance(d, dict):
            return [("", "must be an object")]
        for key in set(d) - {"operatingAccount", "loginAccount", "linkedAccount", "productDestinationId",
                             "reference"}:
            v.append((key, "unknown field"))
        for name in ("operatingAccount", "loginAccount"):
            account = d.get(name)
            if account is None and name == "loginAccount":
                continue
            if (not isinstance(account, dict) or set(account) != {"accountType", "accountId"}
                    or account["accountType"] != "GOOGLE_ADS"
                    or not re.fullmatch(r"\d{10}", str(account.get("accountId")))
                    or not isinstance(account.get("accountId"), str)):
                v.append((name, "must be {accountType: GOOGLE_ADS, accountId: 10 digits}"))
        if d.get("operatingAccount", {}).get("accountId") != self.operating_account:
            v.append(("operatingAccount.accountId", "not the account owning the conversion action"))
        pdi = d.get("productDestinationId")
        if not isinstance(pdi, str) or not pdi.isdigit():
            v.append(("productDestinationId", "conversion action id (digits, as a string) required"))
        return v

    def _consent(self, consent) -> list[tuple[str, str]]:
        if not isinstance(consent, dict) or set(consent) - {"adUserData", "adPersonalization"}:
            return [("", "only adUserData and adPersonalization")]
        return [(k, "invalid consent value") for k, val in consent.items() if val not in self.CONSENT_VALUES]

    def _event(self, e, encoding) -> list[tuple[str, str]]:
        if not isinstance(e, dict):
            return [("", "must be an object")]
        v = [(key, "unknown field") for key in set(e) - self.EVENT_KEYS]
        if not isinstance(e.get("transactionId"), str) or not e["transactionId"]:
            v.append(("transactionId", "required (our dedupe key)"))
        when = parse_rfc3339(e.get("eventTimestamp"))
        if when is None:
            v.append(("eventTimestamp", "RFC 3339 timestamp required"))
        elif when > self.clock() + dt.timedelta(minutes=5):
            v.append(("eventTimestamp", "in the future"))
        if e.get("eventSource") not in ("WEB", "APP", "IN_STORE", "PHONE", "OTHER"):
            v.append(("eventSource", "invalid event source"))
        ids = e.get("adIdentifiers")
        clicks = []
        if ids is not None:
            if not isinstance(ids, dict):
                v.append(("adIdentifiers", "must be an object"))
            else:
                clicks = [k for k in ("gclid", "gbraid", "wbraid") if k in ids]
                allowed = {"gclid", "gbraid", "wbraid", "sessionAttributes", "landingPageDeviceInfo"}
                for key in set(ids) - allowed:
                    v.append((f"adIdentifiers.{key}", "unknown field"))
                if len(clicks) != 1:
                    v.append(("adIdentifiers", "exactly one of gclid, gbraid, wbraid"))
                for k in clicks:
                    if not isinstance(ids[k], str) or not ids[k]:
                        v.append((f"adIdentifiers.{k}", "non-empty string required"))
        user = e.get("userData")
        if user is not None:
            v.extend(("userData." + f, m) for f, m in self._user_data(user, encoding))
            if set(clicks) & {"gbraid", "wbraid"}:
                v.append(("userData", "user identifiers must not accompany gbraid/wbraid"))
        if not clicks and user is None:
            v.append(("", "a click id or userData is required"))
        if "conversionValue" in e and not is_number(e["conversionValue"]):
            v.append(("conversionValue", "must be a number"))
        if "currency" in e and not (isinstance(e["currency"], str) and CURRENCY.match(e["currency"])):
            v.append(("currency", "ISO 4217 code required"))
        if "consent" in e:
            v.extend(("consent." + f, m) for f, m in self._consent(e["consent"]))
        return v

    def _user_data(self, user, encoding) -> list[tuple[str, str]]:
        if not isinstance(user, dict) or set(user) != {"userIdentifiers"}:
            return [("", "only userIdentifiers")]
        idents = user["userIdentifiers"]
        if not isinstance(idents, list) or not 1 <= len(idents) <= 10:
            return [("userIdentifiers", "1 to 10 identifiers")]
        v = []
        for i, ident in enumerate(idents):
            if not isinstance(ident, dict) or len(ident) != 1 or next(iter(ident)) not in (
                    "emailAddress", "phoneNumber", "address"):
                v.append((f"userIdentifiers[{i}]", "exactly one of emailAddress, phoneNumber, address"))
                continue
            key, value = next(iter(ident.items()))
            if key != "address" and not self._hashed(value, encoding):
                v.append((f"userIdentifiers[{i}].{key}", f"not a SHA-256 digest in {encoding} encoding"))
        return v

    @staticmethod
    def _hashed(value, encoding) -> bool:
        if not isinstance(value, str):
            return False
        if encoding == "HEX":
            return bool(HEX64.match(value))
        try:
            return len(base64.b64decode(value, validate=True)) == 32
        except ValueError:
            return False


# -- Meta Conversions API -------------------------------------------------------------------


class MetaReceiver(Receiver):
    kind = "meta"
    ACCESS_TOKEN = "meta-access-token-0123456789"
    EVENT_KEYS = {"event_name", "event_time", "action_source", "event_id", "user_data", "custom_data",
                  "event_source_url", "opt_out", "data_processing_options"}
    USER_KEYS = {"ph", "em", "fn", "ln", "ct", "st", "zp", "country", "external_id", "fbc", "fbp",
                 "client_ip_address", "client_user_agent"}
    FBC = re.compile(r"^fb\.1\.\d{13}\.\S+$")
    FBP = re.compile(r"^fb\.1\.\d{13}\.\d+$")

    def __init__(self, clock=None, pixel_id="1122334455"):
        super().__init__(clock)
        self.pixel_id = pixel_id

    def events(self) -> list[dict]:
        return [e for body in self.received for e in body["data"]]

    def config(self, **overrides) -> dict:
        return {"base_url": self.url, "pixel_id": self.pixel_id, "access_token": self.ACCESS_TOKEN,
                "api_version": "v23.0", **overrides}

    def failure_body(self, status: int) -> bytes:
        return json.dumps({"error": {"message": "An unexpected error has occurred. Please retry your "
                                                "request later.", "type": "OAuthException", "code": 2,
                                     "is_transient": True, "fbtrace_id": "Atrace"}}).encode()

    def _error(self, message: str, code=100, subcode=None, title=None, user_msg=None, status=400):
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
        if subcode:
            error.update(error_subcode=subcode, is_transient=False, error_user_title=title,
                         error_user_msg=user_msg)
        return Response(json.dumps({"error": error}), status, content_type="application/json")

    def handle(self, request: Request, body: bytes) -> Response:
        match = re.fullmatch(r"/(v\d+\.\d+)/(\d+)/events", request.path)
        if request.method != "POST" or not match or match.group(2) != self.pixel_id:
            self.problem(f"unexpected {request.method} {request.path}")
            return self._error("Unsupported post request.", code=100, status=400)
        if request.args.get("access_token") != self.ACCESS_TOKEN:
            self.problem("missing or invalid access_token")
            return self._error("Invalid OAuth access token - Cannot parse access token", code=190)
        try:
            data = json.loads(body)
        except ValueError:
            self.problem("body is not JSON")
            return self._error("Invalid parameter")
        problems, too_old = self.validate(data)
        if too_old:
            self.problem("an event is more than 7 days old")
            return self._error("Invalid parameter", subcode=2804003, title="Event Timestamp Too Old",
                               user_msg="The timestamp for this event is too far in the past. Events need "
                                        "to be sent from your server within 7 days of when they occurred.")
        if problems:
            self.errors.extend(f"meta: {p}" for p in problems)
            return self._error("Invalid parameter", subcode=2804019, title="Invalid parameter",
                               user_msg="; ".join(problems)[:500])
        self.received.append(data)
        return Response(json.dumps({"events_received": len(data["data"]), "messages": [],
                                    "fbtrace_id": "A" + uuid.uuid4().hex[:20]}),
                        200, content_type="application/json")

    def validate(self, data) -> tuple[list[str], bool]:
        if not isinstance(data, dict) or set(data) - {"data", "test_event_code"}:
            return ["body must hold only data and test_event_code"], False
        events = data.get("data")
        if not isinstance(events, list) or not 1 <= len(events) <= 1000:
            return ["data must hold 1 to 1000 events"], False
        problems, too_old = [], False
        now = self.clock().timestamp()
        ids = [e.get("event_id") for e in events if isinstance(e, dict)]
        if len(set(ids)) != len(ids):
            problems.append("duplicate event_id in one request")
        for i, e in enumerate(events):
            p = f"data[{i}]"
            if not isinstance(e, dict):
                problems.append(f"{p}: not an object")
                continue
            problems.extend(f"{p}.{k}: unknown field" for k in set(e) - self.EVENT_KEYS)
            if not isinstance(e.get("event_name"), str) or not e["event_name"]:
                problems.append(f"{p}.event_name: required")
            t = e.get("event_time")
            if not isinstance(t, int) or isinstance(t, bool):
                problems.append(f"{p}.event_time: Unix seconds (integer) required")
            elif t < now - 7 * 86400:
                too_old = True
            elif t > now + 60:
                problems.append(f"{p}.event_time: in the future")
            if e.get("action_source") != "phone_call":
                problems.append(f"{p}.action_source: phone_call expected")
            if not isinstance(e.get("event_id"), str) or not e["event_id"]:
                problems.append(f"{p}.event_id: required for deduplication")
            problems.extend(f"{p}.user_data.{m}" for m in self._user_data(e.get("user_data")))
            custom = e.get("custom_data")
            if custom is not None:
                if not isinstance(custom, dict) or set(custom) - {"value", "currency"}:
                    problems.append(f"{p}.custom_data: only value and currency")
                elif not is_number(custom.get("value")) or not CURRENCY.match(str(custom.get("currency"))):
                    problems.append(f"{p}.custom_data: numeric value and ISO 4217 currency required")
        return problems, too_old

    def _user_data(self, user) -> list[str]:
        if not isinstance(user, dict) or not user:
            return ["at least one customer information parameter required"]
        problems = [f"{k}: unknown field" for k in set(user) - self.USER_KEYS]
        for key in ("ph", "em"):
            if key in user:
                values = user[key] if isinstance(user[key], list) else [user[key]]
                if not values or not all(isinstance(x, str) and HEX64.match(x) for x in values):
                    problems.append(f"{key}: SHA-256 lowercase hex required")
        if "fbc" in user and not (isinstance(user["fbc"], str) and self.FBC.match(user["fbc"])):
            problems.append("fbc: fb.1.<ms>.<fbclid> expected")
        if "fbp" in user and not (isinstance(user["fbp"], str) and self.FBP.match(user["fbp"])):
            problems.append("fbp: fb.1.<ms>.<random> expected")
        return problems


# -- GA4 Measurement Protocol ----------------------------------------------------------------


class GA4Receiver(Receiver):
    kind = "ga4"
    MEASUREMENT_ID = "G-TEST1234"
    API_SECRET = "ga4-api-secret-0123456789"
    NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
    RESERVED = ("_", "firebase_", "ga_", "google_", "gtag.")

    def __init__(self, clock=None):
        super().__init__(clock)
        self.validated: list[dict] = []

    def events(self) -> list[dict]:
        return [dict(e, client_id=body["client_id"]) for body in self.received for e in body["events"]]

    def config(self, **overrides) -> dict:
        return {"base_url": self.url, "measurement_id": self.MEASUREMENT_ID, "api_secret": self.API_SECRET,
                **overrides}

    def handle(self, request: Request, body: bytes) -> Response:
        debug = request.path == "/debug/mp/collect"
        if request.method != "POST" or request.path not in ("/mp/collect", "/debug/mp/collect"):
            self.problem(f"unexpected {request.method} {request.path}")
            return Response("", 404)
        messages = []
        # the debug endpoint checks neither measurement_id nor api_secret
        if not debug and (request.args.get("measurement_id") != self.MEASUREMENT_ID
                          or request.args.get("api_secret") != self.API_SECRET):
            messages.append({"fieldPath": "api_secret", "description": "wrong measurement_id/api_secret",
                             "validationCode": "VALUE_INVALID"})
        if len(body) >= 130_000:
            messages.append(self._msg("", "body too large"))
        try:
            data = json.loads(body)
        except ValueError:
            data = None
            messages.append({"fieldPath": "", "description": "not JSON", "validationCode": "VALUE_INVALID"})
        if data is not None:
            messages.extend(self.validate(data))
        if debug:
            self.validated.append(data)
            answer = json.dumps({"validationMessages": messages})
            return Response(answer, 200, content_type="application/json")
        if messages:
            self.errors.extend(f"ga4: {m['fieldPath']}: {m['description']}" for m in messages)
        else:
            self.received.append(data)
        return Response("", 204)  # /mp/collect never reports problems

    def _msg(self, path, text, code="VALUE_INVALID"):
        return {"fieldPath": path, "description": text, "validationCode": code}

    def validate(self, data) -> list[dict]:
        m = []
        if not isinstance(data, dict):
            return [self._msg("", "body must be an object")]
        for key in set(data) - {"client_id", "user_id", "timestamp_micros", "consent", "user_properties",
                                "user_data", "events", "validation_behavior", "non_personalized_ads"}:
            m.append(self._msg(key, "unknown field", "NAME_INVALID"))
        if not isinstance(data.get("client_id"), str) or not re.fullmatch(r"\d+\.\d+", data["client_id"]):
            m.append(self._msg("client_id", "like 1234567890.1699999999 required", "VALUE_REQUIRED"))
        events = data.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= 25:
            return m + [self._msg("events", "1 to 25 events", "EXCEEDED_MAX_ENTITIES")]
        now = self.clock()
        for i, e in enumerate(events):
            p = f"events[{i}]"
            if not isinstance(e, dict) or set(e) - {"name", "params", "timestamp_micros"}:
                m.append(self._msg(p, "only name, params, timestamp_micros"))
                continue
            name = e.get("name")
            if (not isinstance(name, str) or not self.NAME.match(name)
                    or name.lower().startswith(self.RESERVED)):
                m.append(self._msg(f"{p}.name", f"invalid event name {name!r}", "NAME_INVALID"))
            micros = e.get("timestamp_micros")
            if micros is not None:
                if not isinstance(micros, int) or isinstance(micros, bool) or len(str(micros)) != 16:
                    m.append(self._msg(f"{p}.timestamp_micros", "microseconds (16 digits) required"))
                else:
                    when = dt.datetime.fromtimestamp(micros / 1e6, dt.UTC)
                    if when < now - dt.timedelta(hours=72):
                        m.append(self._msg(f"{p}.timestamp_micros", "more than 72 hours ago"))
                    if when > now + dt.timedelta(minutes=5):
                        m.append(self._msg(f"{p}.timestamp_micros", "in the future"))
            params = e.get("params", {})
            if not isinstance(params, dict) or len(params) > 25:
                m.append(self._msg(f"{p}.params", "at most 25 params", "EXCEEDED_MAX_ENTITIES"))
                continue
            for key, value in params.items():
                if not self.NAME.match(key):
                    m.append(self._msg(f"{p}.params.{key}", "invalid param name", "NAME_INVALID"))
                if isinstance(value, str) and len(value) > 100:
                    m.append(self._msg(f"{p}.params.{key}", "value over 100 characters", "VALUE_INVALID"))
                elif not isinstance(value, str) and not is_number(value):
                    m.append(self._msg(f"{p}.params.{key}", "string or number required"))
            if not is_number(params.get("engagement_time_msec")):
                m.append(self._msg(f"{p}.params.engagement_time_msec", "number required to join the session"))
            currency = str(params.get("currency"))
            if "value" in params and not (is_number(params["value"]) and CURRENCY.match(currency)):
                m.append(self._msg(f"{p}.params.value", "numeric value with an ISO 4217 currency"))
        return m


# -- Microsoft Advertising (SOAP) ------------------------------------------------------------

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
V13 = "https://bingads.microsoft.com/CampaignManagement/v13"
ADAPI = "https://adapi.microsoft.com"
CONVERSION_ORDER = ["ConversionCurrencyCode", "ConversionName", "ConversionTime", "ConversionValue",
                    "ExternalAttributionCredit", "ExternalAttributionModel", "HashedEmailAddress",
                    "HashedPhoneNumber", "MicrosoftClickId"]
ADJUSTMENT_ORDER = ["AdjustmentCurrencyCode", "AdjustmentTime", "AdjustmentType", "AdjustmentValue",
                    "ConversionName", "ConversionTime", "HashedEmailAddress", "HashedPhoneNumber",
                    "MicrosoftClickId"]
OPERATIONS = {"ApplyOfflineConversions": ("OfflineConversions", "OfflineConversion", CONVERSION_ORDER),
              "ApplyOfflineConversionAdjustments": ("OfflineConversionAdjustments",
                                                    "OfflineConversionAdjustment", ADJUSTMENT_ORDER)}
HEADER_ORDER = ["Action", "AuthenticationToken", "CustomerAccountId", "CustomerId", "DeveloperToken"]
XS_DATETIME_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def soap_fault(code: int, error_code: str, message: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
            f"<faultstring>Invalid client data. Check the SOAP fault details for more information. "
            f"TrackingId: {uuid.uuid4()}.</faultstring><detail>"
            f'<AdApiFaultDetail xmlns="{ADAPI}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            f"<TrackingId>{uuid.uuid4()}</TrackingId><Errors><AdApiError><Code>{code}</Code>"
            f'<Detail i:nil="true"/><ErrorCode>{error_code}</ErrorCode><Message>{message}</Message>'
            "</AdApiError></Errors></AdApiFaultDetail></detail></s:Fault></s:Body></s:Envelope>").encode()


class MicrosoftReceiver(Receiver):
    kind = "microsoft"
    PATH = "/Api/Advertiser/CampaignManagement/v13/CampaignManagementService.svc"
    DEVELOPER_TOKEN = "ms-developer-token-0123456789"
    failure_type = "text/xml; charset=utf-8"

    def __init__(self, clock=None, customer_id="111222", account_id="333444", goals=None):
        super().__init__(clock)
        self.customer_id = customer_id
        self.account_id = account_id
        self.goals = set(goals) if goals is not None else None

    def events(self) -> list[dict]:
        return [dict(item, operation=body["operation"]) for body in self.received for item in body["items"]]

    def config(self, **overrides) -> dict:
        return {"base_url": self.url, "customer_id": self.customer_id, "account_id": self.account_id,
                "developer_token": self.DEVELOPER_TOKEN, "access_token": STATIC_TOKEN, **overrides}

    def failure_body(self, status: int) -> bytes:
        return soap_fault(0, "InternalError", "An internal error has occurred.")

    def fault_next(self, n: int = 1, code: int = 117, error_code: str = "CallRateExceeded") -> None:
        self.fail_next(n, 500, {"Content-Type": "text/xml; charset=utf-8"},
                       soap_fault(code, error_code, "scripted fault"))

    def _fault(self, code, error_code, message) -> Response:
        return Response(soap_fault(code, error_code, message), 500, content_type="text/xml; charset=utf-8")

    def handle(self, request: Request, body: bytes) -> Response:
        if request.method != "POST" or request.path != self.PATH:
            self.problem(f"unexpected {request.method} {request.path}")
            return Response("", 404)
        if request.mimetype != "text/xml":
            self.problem(f"content type {request.mimetype} (SOAP 1.1 takes text/xml)")
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            self.problem("body is not XML")
            return self._fault(0, "InternalError", "malformed XML")
        if root.tag != f"{{{SOAP}}}Envelope" or [c.tag for c in root] != [f"{{{SOAP}}}Header",
                                                                          f"{{{SOAP}}}Body"]:
            self.problem("envelope must hold s:Header then s:Body")
            return self._fault(0, "InternalError", "bad envelope")
        header = root[0]
        tags = [c.tag for c in header]
        if tags != [f"{{{V13}}}{t}" for t in HEADER_ORDER]:
            self.problem(f"header elements out of order or namespace: {tags}")
        values = {c.tag.rsplit('}', 1)[-1]: (c.text or "") for c in header}
        operation = values.get("Action", "")
        if operation not in OPERATIONS:
            self.problem(f"unknown Action {operation!r}")
            return self._fault(0, "InternalError", "unknown action")
        if header[0].get("mustUnderstand") != "1":
            self.problem("Action must carry mustUnderstand=1")
        if request.headers.get("SOAPAction", "").strip('"') != operation:
            self.problem("SOAPAction header does not name the operation")
        if (values.get("AuthenticationToken") not in self.valid_tokens
                or values.get("DeveloperToken") != self.DEVELOPER_TOKEN):
            self.problem("invalid AuthenticationToken or DeveloperToken")
            return self._fault(105, "InvalidCredentials",
                               "Authentication failed. Either supplied credentials are invalid or the "
                               "account is inactive.")
        if values.get("CustomerAccountId") != self.account_id or values.get("CustomerId") != self.customer_id:
            self.problem("wrong CustomerAccountId/CustomerId")
            return self._fault(106, "UserIsNotAuthorized", "The user is not an authorized developer.")
        wrapper, item_tag, order = OPERATIONS[operation]
        body_el = root[1]
        request_el = body_el[0] if len(body_el) == 1 else None
        if request_el is None or request_el.tag != f"{{{V13}}}{operation}Request" or len(request_el) != 1 \
                or request_el[0].tag != f"{{{V13}}}{wrapper}":
            self.problem(f"body must be {operation}Request/{wrapper}")
            return self._fault(0, "InternalError", "bad body")
        items_el = list(request_el[0])
        if not 1 <= len(items_el) <= 1000:
            return self._batch_fault("OfflineConversionBatchSizeExceedsLimit", 1000)
        items, partial = [], []
        for index, el in enumerate(items_el):
            item, problems = self._item(el, item_tag, order, operation)
            items.append(item)
            for error_code, message in problems:
                partial.append((index, error_code, message))
        if partial:
            self.errors.extend(f"microsoft: item {i}: {c}: {m}" for i, c, m in partial
                               if c != "OfflineConversionNameInvalid")
        failed = {p[0] for p in partial}
        self.received.append({"operation": operation, "header": values,
                              "items": [it for i, it in enumerate(items) if i not in failed]})
        return Response(self._response(operation, partial), 200, content_type="text/xml; charset=utf-8")

    def _batch_fault(self, error_code, code):
        self.problem(error_code)
        return self._fault(code, error_code, error_code)

    def _item(self, el, item_tag, order, operation):
        problems = []
        if el.tag != f"{{{V13}}}{item_tag}":
            return {}, [("InvalidItem", f"expected {item_tag}")]
        names = [c.tag.rsplit("}", 1)[-1] for c in el]
        if any(not c.tag.startswith(f"{{{V13}}}") for c in el):
            problems.append(("InvalidNamespace", "children must be in the v13 namespace"))
        if [n for n in order if n in names] != names or len(set(names)) != len(names):
            problems.append(("ElementOrder", f"children out of schema order: {names}"))
        item = {c.tag.rsplit("}", 1)[-1]: (c.text or "") for c in el}
        now = self.clock()
        if not item.get("MicrosoftClickId"):
            problems.append(("OfflineConversionMSClickIdNullOrEmpty", "MicrosoftClickId required"))
        if not item.get("ConversionName"):
            problems.append(("OfflineConversionNameNullOrEmpty", "ConversionName required"))
        elif self.goals is not None and item["ConversionName"] not in self.goals:
            problems.append(("OfflineConversionNameInvalid", "no goal has this name"))
        when = self._time(item.get("ConversionTime"), problems, "OfflineConversionTime")
        if when and when < now - dt.timedelta(days=90):
            problems.append(("OfflineConversionTimeOutOfWindow", "more than 90 days ago"))
        if when and when > now + dt.timedelta(minutes=5):
            problems.append(("FutureConversionTimeCannotBeSet", "in the future"))
        for key in ("ConversionValue", "AdjustmentValue"):
            if key in item:
                try:
                    if float(item[key]) < 0 or "e" in item[key].lower():
                        raise ValueError
                except ValueError:
                    problems.append(("OfflineConversionValueInvalid", f"{key} must be a non-negative double"))
        for key in ("ConversionCurrencyCode", "AdjustmentCurrencyCode"):
            if key in item and not CURRENCY.match(item[key]):
                problems.append(("OfflineConversionCurrencyCodeInvalid", f"{key} invalid"))
        if operation == "ApplyOfflineConversionAdjustments":
            kind = item.get("AdjustmentType")
            if kind not in ("Retract", "Restate"):
                problems.append(("OfflineConversionInvalidAdjustmentType", "Retract or Restate"))
            if kind == "Retract" and "AdjustmentValue" in item:
                problems.append(("OfflineConversionAdjustmentValueNotExpected", "no value on Retract"))
            if kind == "Restate" and "AdjustmentValue" not in item:
                problems.append(("OfflineConversionAdjustmentValueRequired", "value required on Restate"))
            adjusted = self._time(item.get("AdjustmentTime"), problems, "OfflineConversionAdjustmentTime")
            if adjusted and when and adjusted < when:
                problems.append(("OfflineConversionAdjustmentTimeEarlierThanConversionTime", "too early"))
            if adjusted and adjusted > now + dt.timedelta(minutes=5):
                problems.append(("OfflineConversionFutureAdjustmentTimeCannotBeSet", "in the future"))
        return item, problems

    @staticmethod
    def _time(text, problems, prefix):
        if not text:
            problems.append((f"{prefix}NullOrEmpty", "time required"))
            return None
        if not XS_DATETIME_UTC.match(text):
            problems.append((f"{prefix}Invalid", f"UTC xs:dateTime (ending in Z) required: {text!r}"))
            return None
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    @staticmethod
    def _response(operation: str, partial) -> bytes:
        errors = "".join(
            f"<BatchError><Code>{3000 + n}</Code><Details>{message}</Details><ErrorCode>{code}</ErrorCode>"
            f"<FieldPath i:nil=\"true\"/><Index>{index}</Index><Message>{message}</Message>"
            f"<Type>BatchError</Type></BatchError>"
            for n, (index, code, message) in enumerate(partial))
        return (f'<s:Envelope xmlns:s="{SOAP}"><s:Header>'
                f'<TrackingId xmlns="{V13}">{uuid.uuid4()}</TrackingId>'
                f'</s:Header><s:Body><{operation}Response xmlns="{V13}">'
                f'<PartialErrors xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{errors}</PartialErrors>'
                f"</{operation}Response></s:Body></s:Envelope>").encode()
