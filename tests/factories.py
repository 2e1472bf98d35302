"""Test data: valid fictional numbers, and requests made the way real clients make them."""

from __future__ import annotations

import json
import secrets

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
# The test apps' settings for offline conversions: the local receivers on 127.0.0.1 may be
# reached, and credentials are encrypted with a fixed key shared by every app of a test.
OUTBOUND_ALLOW_HOSTS = "127.0.0.1,localhost"
CREDENTIALS_KEY = "ZG5pLXRlc3Qtc3VpdGUtY3JlZGVudGlhbHMta2V5ISE="
CHROME_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def numbers(count: int, start: int = 101, area: str = "650") -> list[str]:
    """Valid fictional US numbers (NXX 555, lines 0100-0199, then other exchanges)."""
    out = []
    for i in range(count):
        line = start + i
        exchange, line = ("555", line) if line <= 199 else (f"{200 + line // 10000:03d}",
                                                             line % 10000)
        out.append(f"+1{area}{exchange}{line:04d}")
    return out


def new_session_id() -> str:
    return secrets.token_hex(12)



def post_session(client, site_key: str, url: str = "https://shop.example/", *,
                 ua: str = CHROME_UA, ip: str = "192.0.2.10", **fields):
    """POST /v1/sessions the way the snippet does (JSON as text/plain)."""
    body = {"site": site_key, "url": url, **fields}
    return client.post("/v1/sessions", data=json.dumps(body),
                       headers={"Content-Type": "text/plain;charset=UTF-8", "User-Agent": ua},
                       environ_base={"REMOTE_ADDR": ip})


def heartbeat(client, site_key: str, session_id: str, url: str | None = None):
    body = {"site": site_key} | ({"url": url} if url else {})
    return client.post(f"/v1/sessions/{session_id}/heartbeat", json=body,
                       headers={"User-Agent": CHROME_UA})


def make_site(admin, **fields) -> dict:
    response = admin.post("/v1/sites", json={"name": "Plumbing Co", **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def make_pool(admin, site: dict, **fields) -> dict:
    body = {"site": site["key"], "name": "Main", "target": "+18005550100",
            "destination": "+12125550199", "numbers": numbers(3)} | fields
    response = admin.post("/v1/pools", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def record(app) -> int:
    """Run the recorder once, as the worker would: copies lease events into SQL."""
    from dni_server.worker import Worker

    return Worker(app).run_once()


TWILIO_TOKEN = "twilio-test-auth-token"


def twilio_post(client, path: str, params: dict, *, token: str = TWILIO_TOKEN,
                signature: str | None = None, base: str = "http://localhost"):
    """POST a form the way Twilio does, signed with the account's auth token."""
    from twilio.request_validator import RequestValidator

    url = base + path
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature},
                       base_url=base)


def twilio_call(call_sid: str, to: str, caller: str = "+14158675309", **extra) -> dict:
    return {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": to,
            "CallStatus": "ringing", "ApiVersion": "2010-04-01", "Direction": "inbound",
            **extra}


class AdminClient:
    """A test client that sends the admin token."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):
        call = getattr(self.client, method)

        def with_token(*args, **kwargs):
            kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
            return call(*args, **kwargs)

        return with_token
