"""Requests the way the page makes them: a session, then a callback (JSON as text/plain)."""

from __future__ import annotations

import json

from factories import CHROME_UA, make_pool, make_site, post_session

CONSENT = "By submitting you agree to be called back at this number about your request."


def site_with_session(admin, client, ip: str = "192.0.2.10", domains=(), **pool_fields
                      ) -> tuple[dict, str]:
    site = make_site(admin, domains=list(domains))
    make_pool(admin, site, **pool_fields)
    answer = post_session(client, site["key"], "https://shop.example/?utm_source=google",
                          ip=ip)
    assert answer.status_code == 200, answer.get_json()
    return site, answer.get_json()["session_id"]


def post_callback(client, site_key: str, session_id: str, phone: str = "+16505550177", *,
                  ip: str = "192.0.2.10", ua: str = CHROME_UA, origin: str | None = None,
                  **fields):
    body = {"site": site_key, "session_id": session_id, "phone": phone, "consent": CONSENT,
            "url": "https://shop.example/pricing"} | fields
    headers = {"Content-Type": "text/plain;charset=UTF-8", "User-Agent": ua}
    if origin:
        headers["Origin"] = origin
    return client.post("/v1/callbacks", data=json.dumps(body), headers=headers,
                       environ_base={"REMOTE_ADDR": ip})
