"""GET /dni.js: the committed build, cacheable for a day, revalidated by a strong ETag."""

from __future__ import annotations

from dni_support import BUILT


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
