"""attribution.static_numbers called directly with an SQL session (no Flask); the API's
static-number routes (their own blueprint now) and the CLI go through it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from attribution import static_numbers
from attribution.models import StaticNumber
from factories import make_pool, make_site, numbers
from pools import catalog
from pools.catalog import CatalogError

RADIO = {"number": "(800) 555-0102", "destination": "+12125550199", "source": "radio",
         "medium": "offline", "label": "WXYZ 7am"}


@pytest.fixture
def sql(database_url, make_app):
    """A plain SQLAlchemy session on the test database (``make_app`` empties it after)."""
    engine = sa.create_engine(database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def refused(fn, *args) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        fn(*args)
    return caught.value


def test_a_static_number_is_created_changed_and_retired(sql):
    site = catalog.create_site(sql, name="Radio Co")
    row = static_numbers.create_static_number(sql, RADIO | {"site_id": site.id})
    sql.commit()
    assert (row.number, row.status, row.site_id) == ("+18005550102", "active", site.id)
    static_numbers.update_static_number(sql, row, {"number": "+1 800 555 0102",
                                                   "label": "Drive"})
    sql.commit()  # its own number again is no clash
    assert (row.number, row.label) == ("+18005550102", "Drive")
    static_numbers.retire_static_number(sql, row)
    sql.commit()
    retired_at = row.retired_at
    assert row.status == "retired" and retired_at is not None
    static_numbers.retire_static_number(sql, row)
    assert row.retired_at == retired_at  # retiring twice changes nothing
    # A retired number may be given to a new placement.
    again = static_numbers.create_static_number(sql, RADIO)
    sql.commit()
    assert again.id != row.id


def test_the_one_check_refuses_bad_and_taken_numbers(sql):
    bad = refused(static_numbers.create_static_number, sql,
                  RADIO | {"number": "12345", "destination": "x"})
    assert set(bad.fields) == {"number", "destination"} and bad.status == 422
    first = static_numbers.create_static_number(sql, RADIO)
    sql.commit()
    taken = refused(static_numbers.create_static_number, sql, RADIO)
    assert taken.fields == {"number": f"+18005550102 is already static number {first.id}"}
    blank = refused(static_numbers.create_static_number, sql,
                    RADIO | {"number": "+18005550103", "source": "", "label": "x" * 256})
    assert set(blank.fields) == {"source", "label"}
    assert sql.scalar(sa.select(sa.func.count()).select_from(StaticNumber)) == 1


def test_api_and_service_refuse_alike(admin, database_url):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    pool_number = admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]
    engine = sa.create_engine(database_url)
    with Session(engine) as sql:
        for body in (RADIO | {"number": "12345", "destination": "x"},
                     RADIO | {"number": pool_number}):
            from_service = refused(static_numbers.create_static_number, sql, body)
            answer = admin.post("/v1/static-numbers", json=body)
            assert answer.status_code == 422
            assert answer.get_json()["error"] == {"code": "invalid",
                                                  "message": str(from_service),
                                                  "fields": from_service.fields}
    engine.dispose()


def test_the_routes_live_in_their_own_blueprint(app, admin):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()
                 if rule.rule.startswith("/v1/static-numbers")}
    assert endpoints == {"static_numbers.create_static_number",
                         "static_numbers.list_static_numbers",
                         "static_numbers.show_static_number",
                         "static_numbers.update_static_number",
                         "static_numbers.retire_static_number"}
    assert admin.get("/v1/static-numbers/99999999999").status_code == 404  # id converter
    assert admin.get("/v1/static-numbers/12345").get_json()["error"]["code"] == \
        "unknown_static_number"


def test_the_cli_creates_a_static_number_through_the_service(app, admin):
    site = make_site(admin)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["dni", "create-static-number", "--number", "(800) 555-0102",
                                 "--destination", "+12125550199", "--source", "radio",
                                 "--medium", "offline", "--site", site["key"]])
    assert result.exit_code == 0, result.output
    listed = admin.get("/v1/static-numbers").get_json()["static_numbers"]
    assert [(s["number"], s["site_id"]) for s in listed] == [("+18005550102", site["id"])]
    again = runner.invoke(args=["dni", "create-static-number", "--number", "+18005550102",
                                "--destination", "+12125550199", "--source", "tv",
                                "--medium", "offline"])
    assert again.exit_code == 2 and "already static number" in again.output
