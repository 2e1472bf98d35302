"""How long the snippet takes to swap a big page, and whether the swap moves anything.

In headless Chromium, a page of about 2,000 elements with the target number sprinkled through
it (text in several formats, split spans, tel: links) loads the built snippet, which leases a
number from a local fake service on another origin. Printed per run and as a median:

- swap: from the service's answer arriving to the swap done, measured with the marks the
  snippet sets (performance.mark 'dni:response' and 'dni:swapped');
- swapped: how many numbers changed (a check that the swap really happened);
- rescan: the same page swapped again once warm (dni('restore') then dni('rescan'), median of
  20), the cost of a later swap such as a renewal bringing a new number;
- CLS: the cumulative layout shift after load (PerformanceObserver 'layout-shift'); must be 0.

Not a test: nothing is asserted, the figures are printed. Run: python bench/snippet_swap.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "snippet" / "tests"))

from dni_support import DESKTOP_UA, FakeService, PageServer, launch  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

RUNS = 7
FORMATS = ["(800) 555-0100", "800-555-0100", "1-800-555-0100", "+1 800 555 0100",
           "800.555.0100", "<span>(800)</span> 555-0100"]


def big_page() -> str:
    """About 2,000 elements: 200 cards of 10, every 8th card showing the number."""
    cards = []
    for i in range(200):
        number = ""
        if i % 8 == 0:
            fmt = FORMATS[(i // 8) % len(FORMATS)]
            number = (f'<p class="n">Call {fmt} or '
                      f'<a href="tel:+18005550100">tap here</a></p>')
        cards.append(
            f'<article class="card"><h3>Service {i}</h3><p>Order #{100000 + i} placed '
            f'2025-03-{i % 28 + 1:02d}, total ${i * 3}.99.</p>{number}<ul><li>Item a</li>'
            f'<li>Item b</li><li>Ref {i * 7919}</li></ul><footer><em>Updated</em> '
            f'<time>10:{i % 60:02d}</time></footer></article>')
    return ("<!doctype html><html><head><meta charset=utf-8><title>Bench</title>"
            "<style>.card{display:inline-block;width:30%;margin:4px;vertical-align:top}"
            "</style>{{snippet}}</head><body><h1>Plumbing, 24/7</h1>"
            + "".join(cards) + "</body></html>")


OBSERVE_CLS = """
window.__cls = 0;
new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
}).observe({type: 'layout-shift', buffered: true});
"""

MEASURE = """() => {
    const r = performance.getEntriesByName('dni:response')[0];
    const s = performance.getEntriesByName('dni:swapped').find(e => e.startTime >= r.startTime);
    return {swap: s.startTime - r.startTime, elements: document.getElementsByTagName('*').length,
            swapped: (document.body.textContent.match(/555.0123/g) || []).length
                     + document.querySelectorAll('a[href="tel:+18005550123"]').length,
            cls: window.__cls};
}"""

RESCAN = """() => {
    const times = [];
    for (let i = 0; i < 20; i++) {
        dni('restore');
        const t = performance.now();
        dni('rescan');
        times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return times[10];
}"""


def main() -> None:
    fake = FakeService(pools={"+18005550100": ["+18005550123"]}).start()
    pages = PageServer()
    pages.configure(fake.url, fake.site)
    url = pages.add("bench.html", big_page())
    results = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        for run in range(RUNS):
            context = browser.new_context(user_agent=DESKTOP_UA)
            page = context.new_page()
            page.add_init_script(OBSERVE_CLS)
            page.goto(url)
            page.wait_for_function("performance.getEntriesByName('dni:swapped').length > 0")
            page.wait_for_timeout(300)  # layout-shift entries are reported after a frame
            result = page.evaluate(MEASURE)
            result["rescan"] = page.evaluate(RESCAN)
            results.append(result)
            print(f"run {run + 1}: swap {result['swap']:.2f} ms, {result['swapped']} numbers "
                  f"swapped in {result['elements']} elements, CLS {result['cls']:.4f}, "
                  f"warm rescan {result['rescan']:.2f} ms")
            context.close()
        browser.close()
    fake.close()
    pages.close()
    swaps = [r["swap"] for r in results]
    rescans = [r["rescan"] for r in results]
    print(f"median swap {statistics.median(swaps):.2f} ms (min {min(swaps):.2f}, "
          f"max {max(swaps):.2f}) over {RUNS} runs; warm rescan "
          f"{statistics.median(rescans):.2f} ms; max CLS {max(r['cls'] for r in results):.4f}")


if __name__ == "__main__":
    main()
