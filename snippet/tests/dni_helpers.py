"""Small page helpers shared by the browser tests."""

from __future__ import annotations

import json

UK_TARGET = "+442079460000"
US_TARGET = "+18005550100"

# The one-line stub publishers paste before the tag (see the README of the snippet).
STUB = "window.dni=window.dni||function(){(dni.q=dni.q||[]).push(arguments)};"
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


# Every renewal a document sends, with the status it got (null while out): window.__beats.
TRACK_BEATS = """
    window.__beats = [];
    const realFetch = window.fetch;
    window.fetch = function (url) {
        const sent = realFetch.apply(this, arguments);
        if (String(url).endsWith('/heartbeat')) {
            const beat = {status: null};
            __beats.push(beat);
            sent.then(r => { beat.status = r.status; }, () => { beat.status = 'error'; });
        }
        return sent;
    };
"""


VISIBILITY = """state => {
    Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});
    Object.defineProperty(document, 'hidden', {configurable: true, get: () => state === 'hidden'});
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def set_visibility(page, state: str) -> None:
    """Headless tabs are always visible: fake the state the snippet reads, and the event."""
    page.evaluate(VISIBILITY, state)


def back_from_the_cache(page) -> dict:
    """Go back to a page that must come from the back/forward cache; return the renewal it
    sent on being shown again, once answered. The page is plain.html (it records pageshow)."""
    # A page restored from the cache fires no load event: wait for the commit only.
    page.go_back(wait_until="commit")
    page.wait_for_function("window.__shows && window.__shows.length > 1")
    assert page.evaluate("window.__shows") == [False, True], "not restored from the bfcache"
    # Its renewals: one as it was hidden (leaving), then one on being shown again.
    page.wait_for_function("__beats.length >= 2 && __beats[__beats.length - 1].status !== null")
    return page.evaluate("__beats[__beats.length - 1]")


def responses(page) -> int:
    """How many service answers the snippet has applied so far."""
    return page.evaluate("performance.getEntriesByName('dni:response').length")


def wait_responses(page, count: int = 1, timeout: float = 15000) -> None:
    # Generous: on a loaded two-core CI machine a first answer once took over 5 s to land;
    # a timeout only says how long a real failure takes to be reported.
    page.wait_for_function(
        f"performance.getEntriesByName('dni:response').length >= {count}", timeout=timeout)


def wanted(page) -> list[tuple[str, str, str]]:
    """(id, expected, actual) for every [data-want] text and [data-href] link on the page."""
    return page.evaluate("""() => {
        const out = [];
        for (const el of document.querySelectorAll('[data-want]'))
            out.push([el.id, el.dataset.want, el.tagName === 'TEXTAREA' ? el.value : el.textContent]);
        for (const el of document.querySelectorAll('[data-href]'))
            out.push([el.id + '@href', el.dataset.href, el.getAttribute('href')]);
        return out;
    }""")


def mismatches(page) -> list[tuple[str, str, str]]:
    return [row for row in wanted(page) if row[1] != row[2]]


def text(page, selector: str) -> str:
    return page.text_content(selector)


def stored(page) -> dict:
    """Everything the page's origin holds in localStorage, and its cookies."""
    return page.evaluate("""() => {
        const out = {};
        for (let i = 0; i < localStorage.length; i++) {
            const k = localStorage.key(i);
            out[k] = localStorage.getItem(k);
        }
        return {local: out, cookie: document.cookie};
    }""")


def js(value) -> str:
    return json.dumps(value)


def assert_bot_leaves_the_page(make_page, pages) -> None:
    """A crawler's visit: the answer is the fallback (reason bot) and plain.html is unchanged."""
    tab = make_page(BOT_UA)
    tab.add_init_script(STUB + "dni('onNumber', function (n) { window.__n = n; });")
    tab.goto(pages.page("plain.html"))
    wait_responses(tab)
    [entry] = tab.evaluate("window.__n")
    assert entry["fallback"] is True and entry["reason"] == "bot"
    assert tab.text_content("#num") == "800-555-0100"
    assert tab.get_attribute("#call", "href") == "tel:+18005550100"
