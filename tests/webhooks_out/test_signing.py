"""DNI-Signature: Stripe's scheme (t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from attribution.webhooks import signing
from attribution.webhooks.signing import SignatureError, header_value, verify

SECRET = "whsec_test-secret"
BODY = b'{"id":"evt_1","type":"call.completed","data":{"id":7}}'


def test_the_header_is_t_then_v1_over_timestamp_dot_raw_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header_value(SECRET, BODY, 1700000000) == f"t=1700000000,v1={expected}"
    assert signing.HEADER == "DNI-Signature"


def test_verify_accepts_the_right_body_within_tolerance():
    header = header_value(SECRET, BODY, 1700000000)
    assert verify(BODY, header, SECRET, now=1700000000 + 299) == 1700000000
    # another scheme's value and extra spaces are ignored; any v1 may match (rotation)
    both = f"t=1700000000, v0=abc, v1={'0' * 64}, {header.split(',')[1]}"
    assert verify(BODY, both, SECRET, now=1700000000) == 1700000000


@pytest.mark.parametrize("body, header_secret, now, message", [
    (BODY + b" ", SECRET, 1700000000, "no signature matches"),
    (BODY, "whsec_other", 1700000000, "no signature matches"),
    (BODY, SECRET, 1700000000 + 301, "more than 300 s"),
    (BODY, SECRET, 1700000000 - 301, "more than 300 s"),
])
def test_verify_refuses_tampering_another_secret_and_stale_requests(body, header_secret, now,
                                                                    message):
    header = header_value(header_secret, BODY, 1700000000)
    with pytest.raises(SignatureError, match=message):
        verify(body, header, SECRET, now=now)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=1700000000", "t=soon,v1=abc"])
def test_verify_refuses_a_missing_or_malformed_header(header):
    with pytest.raises(SignatureError):
        verify(BODY, header, SECRET, now=1700000000)


def test_a_forged_timestamp_breaks_the_signature():
    v1 = header_value(SECRET, BODY, 1700000000).split(",")[1]
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY, f"t=1700009999,{v1}", SECRET, now=1700009999)
