"""Rejecting a blocked call before it rings, on carriers that take a command for it."""

from __future__ import annotations

import logging
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)


def telnyx_reject(api_url: str, api_key: str, call_control_id: str, command_id: str) -> str:
    """Telnyx Call Control ``reject`` of an incoming call not yet answered (cause
    CALL_REJECTED); "ok", "retry" or "refused" as ``carriers.telnyx_transfer`` answers."""
    segment = quote(call_control_id, safe=":")
    if segment in (".", ".."):
        return "refused"  # a signed event still cannot steer the key to another path
    try:
        response = requests.post(
            f"{api_url}/calls/{segment}/actions/reject", timeout=3,
            headers={"Authorization": f"Bearer {api_key}"},
            json={"cause": "CALL_REJECTED", "command_id": command_id})
    except requests.RequestException as exc:
        log.warning("Telnyx reject of %s got no answer: %s", call_control_id, exc)
        return "retry"
    if response.status_code == 429 or response.status_code >= 500:
        return "retry"
    if response.status_code >= 300:
        log.error("Telnyx refused the reject of %s: %s %s", call_control_id,
                  response.status_code, response.text[:300])
        return "refused"
    return "ok"
