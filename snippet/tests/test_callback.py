"""Web callbacks on the page, against the real service in Chromium: the data-dni-callback form
and dni('callback', ...) reach POST /v1/callbacks and see its 202."""

from __future__ import annotations

import json

import pytest
from dni_helpers import US_TARGET, wait_responses

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Callback</title>
<script>window.dni = window.dni || function () { (dni.q = dni.q || []).push(arguments); };</script>
{{snippet}}
</head><body>
<p>Call us on <strong id="num">800-555-0100</strong>.</p>
<form id="cb" data-dni-callback>
  <p data-dni-consent>By asking for a call you agree to be called back at this number.</p>
  <input name="phone" value="(650) 555-0177"><input name="name" value="Ada">
  <button id="send">Call me back</button>
</form>
<script>dni('callback');</script>
</body></html>"""


@pytest.fixture
def live(live_service, pages):
    site = live_service.create_site("Callback site", domains=["127.0.0.1"])
    live_service.create_pool(site, name="Pool", target=US_TARGET, numbers=["+18005550123"])
    pages.configure(live_service.url, site["key"])
    return live_service


def test_the_form_is_sent_and_the_202_seen(live, pages, page):
    url = pages.add("callback.html", PAGE)
    page.goto(url)
    wait_responses(page)
    page.wait_for_function("document.getElementById('num').textContent.includes('0123')")
    with page.expect_response(lambda r: r.url.endswith("/v1/callbacks")) as answer:
        page.click("#send")
    response = answer.value
    assert response.status == 202, response.text()
    body = response.json()
    assert body["status"] == "scheduled" and body["id"].startswith("cb_")
    page.wait_for_function(
        "document.getElementById('cb').getAttribute('data-dni-state') == 'scheduled'")
    sent = json.loads(response.request.post_data)
    assert sent["phone"] == "(650) 555-0177" and sent["name"] == "Ada"
    assert sent["consent"].startswith("By asking for a call") and sent["url"] == url
    assert response.request.headers["content-type"].startswith("text/plain")
    status = page.evaluate(
        "([base, id, sid]) => fetch(base + '/v1/callbacks/' + id + '?session_id=' + sid)"
        ".then(r => r.json())", [live.url, body["id"], sent["session_id"]])
    assert status["id"] == body["id"] and status["status"] == "scheduled"


def test_the_command_answers_through_done(live, pages, page):
    page.goto(pages.add("callback2.html", PAGE))
    wait_responses(page)
    page.wait_for_function("document.getElementById('num').textContent.includes('0123')")
    outcome = page.evaluate("""() => new Promise(resolve => dni('callback', {
        phone: '+16505550178', consent: 'Yes, call me.',
        done: (error, answer) => resolve({error: error, answer: answer})}))""")
    assert outcome["error"] is None and outcome["answer"]["status"] == "scheduled"
    refused = page.evaluate("""() => new Promise(resolve => dni('callback', {
        phone: '555', consent: 'Yes, call me.',
        done: (error, answer) => resolve({error: error, answer: answer})}))""")
    assert refused["error"]["status"] == 422 and refused["error"]["code"] == "invalid"
