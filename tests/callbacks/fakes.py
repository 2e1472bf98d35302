"""Local fakes of the carriers' REST APIs, as real HTTP servers in threads.

Each checks what the real API requires of a request (auth, content type, required
fields, known fields) and refuses anything else as the carrier would (401, 415, 422),
recording every request for the test to read. Shapes follow the carriers' documentation:
Twilio's ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (HTTP Basic with the
account SID and auth token, a form), Telnyx's ``POST /v2/calls`` (dial) and
``POST /v2/calls/{call_control_id}/actions/{command}`` (Bearer API key, JSON).
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

TWILIO_CALL_FIELDS = {
    "To", "From", "Url", "Method", "Twiml", "StatusCallback", "StatusCallbackEvent",
    "StatusCallbackMethod", "Timeout", "MachineDetection", "MachineDetectionTimeout",
    "AsyncAmd", "AsyncAmdStatusCallback", "CallerId", "Record", "SendDigits", "TimeLimit"}
TELNYX_DIAL_FIELDS = {
    "connection_id", "to", "from", "from_display_name", "webhook_url", "webhook_url_method",
    "client_state", "command_id", "timeout_secs", "time_limit_secs",
    "answering_machine_detection", "answering_machine_detection_config", "link_to",
    "bridge_on_answer", "bridge_intent", "record", "audio_url", "custom_headers"}
TELNYX_ACTIONS = {
    "gather_using_speak": ({"payload", "voice"}, {
        "payload", "voice", "language", "payload_type", "service_level", "minimum_digits",
        "maximum_digits", "valid_digits", "terminating_digit", "timeout_millis",
        "inter_digit_timeout_millis", "invalid_payload", "maximum_tries", "client_state",
        "command_id"}),
    "bridge": ({"call_control_id"}, {"call_control_id", "client_state", "command_id",
                                     "park_after_unbridge", "play_ringtone", "queue"}),
    "hangup": (set(), {"client_state", "command_id"}),
    "speak": ({"payload", "voice"}, {"payload", "voice", "language", "payload_type",
                                     "client_state", "command_id"}),
}


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 answering ``handle(method, path, headers, body)``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.refusals: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body = fake.handle("POST", self.path, self.headers, raw)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def refuse(self, status: int, why: str) -> tuple[int, dict]:
        with self._lock:
            self.refusals.append(why)
        return status, {"errors": [{"detail": why}], "message": why, "status": status,
                        "code": 20001}

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        """The requests once there are at least ``count`` (commands are sent off thread)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)


class FakeTwilio(FakeServer):
    """Twilio's Calls resource: creates calls, never places them (the test plays the
    carrier's webhooks)."""

    def __init__(self, account_sid: str, auth_token: str):
        self.account_sid, self.auth_token = account_sid, auth_token
        super().__init__()

    def handle(self, method, path, headers, raw):
        parts = urlsplit(path)
        expected = f"/2010-04-01/Accounts/{self.account_sid}/Calls.json"
        if parts.path != expected:
            return self.refuse(404, f"unknown resource {parts.path}")
        auth = headers.get("Authorization", "")
        good = "Basic " + base64.b64encode(
            f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if auth != good:
            return self.refuse(401, "authentication failed")
        if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self.refuse(415, "a form is required")
        form = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(raw.decode()).items()}
        missing = {"To", "From"} - set(form)
        if missing or not ({"Url", "Twiml"} & set(form)):
            return self.refuse(400, f"missing {sorted(missing) or 'Url or Twiml'}")
        unknown = set(form) - TWILIO_CALL_FIELDS
        if unknown:
            return self.refuse(400, f"unknown parameters {sorted(unknown)}")
        sid = "CA" + uuid.uuid4().hex
        self.record({"path": parts.path, "form": form, "sid": sid})
        return 201, {"sid": sid, "account_sid": self.account_sid, "to": form["To"],
                     "from": form["From"], "status": "queued", "direction": "outbound-api",
                     "api_version": "2010-04-01",
                     "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json"}


class FakeTelnyx(FakeServer):
    """Telnyx Call Control: dial answers a new call control id; actions answer ok."""

    def __init__(self, api_key: str):
        self.api_key = api_key
        super().__init__()

    def handle(self, method, path, headers, raw):
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.refuse(401, "authentication failed")
        if not headers.get("Content-Type", "").startswith("application/json"):
            return self.refuse(415, "JSON is required")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.refuse(400, "not JSON")
        route = urlsplit(path).path
        if route == "/v2/calls":
            missing = {"connection_id", "to", "from"} - set(body)
            unknown = set(body) - TELNYX_DIAL_FIELDS
            if missing or unknown:
                return self.refuse(422, f"missing {sorted(missing)} unknown {sorted(unknown)}")
            control_id = "v3:" + uuid.uuid4().hex
            self.record({"command": "dial", "body": body, "call_control_id": control_id})
            return 200, {"data": {"call_control_id": control_id, "call_leg_id": str(uuid.uuid4()),
                                  "call_session_id": str(uuid.uuid4()), "is_alive": False,
                                  "record_type": "call"}}
        parts = route.split("/")
        if len(parts) == 6 and parts[:3] == ["", "v2", "calls"] and parts[4] == "actions":
            name = parts[5]
            if name not in TELNYX_ACTIONS:
                return self.refuse(404, f"unknown command {name}")
            required, allowed = TELNYX_ACTIONS[name]
            if required - set(body) or set(body) - allowed:
                return self.refuse(422, f"{name}: missing {sorted(required - set(body))} "
                                        f"unknown {sorted(set(body) - allowed)}")
            self.record({"command": name, "body": body, "call_control_id": parts[3]})
            return 200, {"data": {"result": "ok"}}
        return self.refuse(404, f"unknown resource {route}")
