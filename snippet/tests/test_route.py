"""GET /dni.js and /dni-touch.js: the committed builds, cacheable for a day, revalidated by a
strong ETag."""

from __future__ import annotations

from dni_support import BUILT, BUILT_TOUCH


def test_snippet_is_served_with_long_caching_and_a_strong_etag(client):
    """The built file, as JavaScript, public for a day, with a quoted (strong) ETag."""
    response = client.get("/dni.js")
    assert response.status_code == 200
    assert response.data == BUILT.read_bytes()
    assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith('W/')


def test_matching_if_none_match_gets_a_304(client):
    """A browser holding this build gets 304 and no body; another build gets the file."""
    etag = client.get("/dni.js").headers["ETag"]
    again = client.get("/dni.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    other = client.get("/dni.js", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == BUILT.read_bytes()


def test_demo_page_without_a_demo_site_is_a_json_404(client):
    """No demo site seeded: the JSON error shape, not a 500."""
    response = client.get("/demo")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "no_demo"


def test_demo_page_embeds_the_snippet_with_the_demo_key(make_app):
    """Seeded with DNI_DEMO: the page carries the tag, the key and the target's formats."""
    app = make_app(DNI_DEMO="true")
    html = app.test_client().get("/demo").get_data(as_text=True)
    assert '<script async src="/dni.js" data-site="' in html
    assert "(800) 555-0100" in html and "+1 800-555-0100" in html and "8005550100" in html
    assert 'href="tel:+18005550100"' in html


def test_the_touch_add_on_is_served_as_the_snippet_is(client):
    """/dni-touch.js: the built add-on, with the snippet's caching, ETag and CORS headers."""
    snippet = client.get("/dni.js")
    response = client.get("/dni-touch.js")
    assert response.status_code == 200
    assert response.data == BUILT_TOUCH.read_bytes()
    for header in ("Content-Type", "Cache-Control", "X-Content-Type-Options",
                   "Access-Control-Allow-Origin"):
        assert response.headers[header] == snippet.headers[header], header
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag != snippet.headers["ETag"]
    again = client.get("/dni-touch.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
