"""The README's JavaScript verification snippet accepts what the service signs and refuses
tampering, another secret and stale timestamps (run with the system's Node)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from attribution.webhooks.signing import header_value

SNIPPET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verify_snippet.js")
SECRET = "whsec_snippet-secret"
BODY = '{"id":"evt_1","type":"call.completed","data":{"id":7,"caller":"José"}}'.encode()


def node_says(secret: str, header: str, body: bytes) -> str:
    node = shutil.which("node")
    assert node, "Node is needed to check the README's JavaScript snippet"
    done = subprocess.run([node, SNIPPET, secret, header], input=body, capture_output=True,
                          timeout=30, check=True)
    return done.stdout.decode().strip()


@pytest.mark.parametrize("secret, body, age, expected", [
    (SECRET, BODY, 0, "valid"),
    (SECRET, BODY + b" ", 0, "invalid"),
    ("whsec_other", BODY, 0, "invalid"),
    (SECRET, BODY, 400, "invalid"),
])
def test_the_javascript_snippet(secret, body, age, expected):
    header = header_value(SECRET, BODY, int(time.time()) - age)
    assert node_says(secret, header, body) == expected
