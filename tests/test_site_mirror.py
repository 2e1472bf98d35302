"""A process that meets a site for the first time while SQL is away still leases numbers."""

from factories import ADMIN_TOKEN, AdminClient, make_pool, make_site, numbers, post_session

NO_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:9/none"  # port 9: refused at once


def test_a_fresh_process_serves_a_known_site_from_the_redis_mirror(make_app):
    app = make_app()
    admin = AdminClient(app.test_client(), ADMIN_TOKEN)
    site = make_site(admin)
    make_pool(admin, site, numbers=numbers(3))
    first = post_session(app.test_client(), site["key"])
    assert first.status_code == 200 and not first.get_json()["numbers"][0]["fallback"]

    cut_off = make_app(DATABASE_URL=NO_DATABASE)  # a new process: empty cache, no SQL
    answer = post_session(cut_off.test_client(), site["key"])
    assert answer.status_code == 200, answer.get_json()
    entry = answer.get_json()["numbers"][0]
    assert entry["fallback"] is False
    assert entry["number"] in numbers(3)
    assert entry["number"] != first.get_json()["numbers"][0]["number"]  # another visitor


def test_an_unseen_site_while_sql_is_away_is_a_503_not_a_500(make_app):
    cut_off = make_app(DATABASE_URL=NO_DATABASE)
    answer = post_session(cut_off.test_client(), "never-seen-site-key")
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "unavailable"
    assert answer.headers["Retry-After"] == "5"
