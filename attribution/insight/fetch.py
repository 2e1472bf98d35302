"""Fetching a recording from the carrier, for the worker (never on a request path).

- Twilio: the callback's ``RecordingUrl`` with ``.wav`` appended (8 kHz PCM16), with HTTP
  basic auth as the account SID and auth token; ``RequestedChannels=2`` asks for both
  legs of a two-party recording.
- Telnyx: ``call.recording.saved`` carries ``recording_urls.wav``, a pre-signed link that
  needs no credentials (and must not get any: the signature is the authorisation); a
  link to Telnyx's own API gets the API key as a bearer token.

Every failure is a ``FetchError`` that says whether trying again later can help;
``backoff`` says when.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # between bytes
TOTAL_TIMEOUT = 300.0  # for the whole body: a trickle does not hold the worker
MAX_BYTES = 200 * 1024 * 1024  # over two hours of dual-channel 8 kHz audio
RETRY_STATUSES = {404, 408, 425, 429, 500, 502, 503, 504}  # 404: the carrier may still be writing it


class FetchError(Exception):
    def __init__(self, message: str, *, retry: bool, status: int | None = None):
        super().__init__(message)
        self.retry = retry
        self.status = status


@dataclass(frozen=True)
class Credentials:
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    telnyx_api_key: str | None = None


def twilio_wav_url(recording_url: str, dual: bool = True) -> str:
    """The ``.wav`` form of a Twilio recording URL (both legs when ``dual``)."""
    parts = urlsplit(recording_url)
    path = parts.path
    if not path.endswith((".wav", ".mp3")):
        path += ".wav"
    query = dict(parse_qsl(parts.query))
    if dual:
        query.setdefault("RequestedChannels", "2")
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def _is_presigned(url: str) -> bool:
    names = {name.lower() for name, _ in parse_qsl(urlsplit(url).query)}
    return bool(names & {"x-amz-signature", "signature", "sig"})


def fetch_recording(url: str, carrier: str, credentials: Credentials, *,
                    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
                    total_timeout: float = TOTAL_TIMEOUT, max_bytes: int = MAX_BYTES,
                    session: requests.Session | None = None) -> bytes:
    """The recording's bytes (a WAV), or a ``FetchError``."""
    headers, auth = {"Accept": "audio/wav, audio/x-wav, */*"}, None
    if carrier == "twilio":
        if not (credentials.twilio_account_sid and credentials.twilio_auth_token):
            raise FetchError("Twilio recordings need the account SID and auth token", retry=False)
        url = twilio_wav_url(url)
        auth = (credentials.twilio_account_sid, credentials.twilio_auth_token)
    elif carrier == "telnyx":
        if credentials.telnyx_api_key and not _is_presigned(url):
            headers["Authorization"] = f"Bearer {credentials.telnyx_api_key}"
    else:
        raise FetchError(f"unknown carrier {carrier!r}", retry=False)
    if urlsplit(url).scheme not in ("https", "http"):
        raise FetchError("recording URL must be http(s)", retry=False)
    getter = session or requests
    deadline = time.monotonic() + total_timeout
    try:
        with getter.get(url, headers=headers, auth=auth, timeout=timeout, stream=True,
                        allow_redirects=True) as response:
            if response.status_code != 200:
                raise FetchError(f"carrier answered {response.status_code}",
                                 retry=response.status_code in RETRY_STATUSES, status=response.status_code)
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(f"recording larger than {max_bytes} bytes", retry=False)
                if time.monotonic() > deadline:
                    raise FetchError(f"recording took over {total_timeout:g} s to arrive", retry=True)
    except requests.Timeout as exc:
        raise FetchError(f"carrier too slow: {exc.__class__.__name__}", retry=True) from exc
    except requests.RequestException as exc:
        raise FetchError(f"cannot reach the carrier: {exc.__class__.__name__}", retry=True) from exc
    if not body.startswith(b"RIFF"):
        raise FetchError("carrier sent something other than a WAV", retry=True)
    return bytes(body)


def backoff(attempt: int, base: float = 60.0, cap: float = 6 * 3600.0,
            jitter: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt`` + 1: doubling from a minute, capped, jittered."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * (0.5 + (jitter or random).random() / 2)
