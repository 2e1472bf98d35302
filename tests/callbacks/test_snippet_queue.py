"""dni-callback.js sends every request dni() was asked for before it ran, in order: one
request (api.c an object) or several (api.c nested pairs [earlier, latest], oldest
innermost), run in Node against stand-ins of the page and of dni.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "snippet" / "src" / "callback.js"
HARNESS = r"""
const vm = require('vm');
const fs = require('fs');
const sent = [];
const pending = JSON.parse(process.argv[2]);
function api(cmd, fn) { if (cmd == 'onNumber') fn([{ session_id: 'sess-1' }]); }
api.c = pending;
function XMLHttpRequest() {}
XMLHttpRequest.prototype.open = function (method, url) { this.url = url; };
XMLHttpRequest.prototype.setRequestHeader = function () {};
XMLHttpRequest.prototype.send = function (body) { sent.push([this.url, JSON.parse(body)]); };
const document = {
  currentScript: { src: 'https://dni.example/dni-callback.js' },
  querySelector: () => ({ dataset: { site: 'site-key' } }),
  querySelectorAll: () => [], readyState: 'complete',
};
const window = { dni: api };
vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8'), {
  window, document, XMLHttpRequest, location: { href: 'https://shop.example/p' },
});
process.stdout.write(JSON.stringify(sent));
"""


def run(pending) -> list:
    if shutil.which("node") is None:
        pytest.fail("node is required for the snippet's tests")
    out = subprocess.run(["node", "-e", HARNESS, str(SOURCE), json.dumps(pending)],
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_one_pending_request_is_sent():
    [(url, body)] = run({"phone": "+16505550177"})
    assert url == "https://dni.example/v1/callbacks"
    assert body["phone"] == "+16505550177" and body["session_id"] == "sess-1"
    assert body["site"] == "site-key" and body["url"] == "https://shop.example/p"


def test_every_pending_request_is_sent_in_order():
    pending = [[[None, {"phone": "+1"}], {"phone": "+2"}], {"phone": "+3"}]
    assert [body["phone"] for _, body in run(pending)] == ["+1", "+2", "+3"]


def test_nothing_pending_sends_nothing():
    assert run(None) == []
