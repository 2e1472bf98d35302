"""attribution.conversions.admin called directly with an SQL session (no Flask), and its one
validator giving the same answer through the API, the JSON config file and the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from attribution.conversions import admin as service
from attribution.conversions.admin import ConversionsError
from attribution.conversions.credentials import CredentialBox, MissingKey
from attribution.conversions.models import (
    ConversionDelivery,
    ConversionDestination,
    ConversionRule,
)
from factories import CREDENTIALS_KEY, make_pool, make_site, numbers
from pools import catalog

SECRET = "EAAsuperSECRETtoken-0123456789"
META = {"pixel_id": "1122334455", "access_token": SECRET, "base_url": "http://127.0.0.1:9"}
BOX = CredentialBox((CREDENTIALS_KEY,))


@pytest.fixture
def sql(database_url, make_app):
    """A plain SQLAlchemy session on the test database (``make_app`` empties it after)."""
    engine = sa.create_engine(database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def new_site(sql: Session):
    site = catalog.create_site(sql, name="Plumbing Co")
    sql.commit()
    return site


def error_of(fn, *args, **kwargs) -> ConversionsError:
    with pytest.raises(ConversionsError) as caught:
        fn(*args, **kwargs)
    return caught.value


# -- destinations --------------------------------------------------------------------------


def test_a_destination_is_created_checked_and_stored_encrypted(sql):
    site = new_site(sql)
    row = service.create_destination(sql, BOX, site_id=site.id, name="meta", kind="meta",
                                     config=META)
    sql.commit()
    assert row.managed_by == "api" and row.config["access_token"] != SECRET
    assert BOX.open(row.config)["access_token"] == SECRET
    taken = error_of(service.create_destination, sql, BOX, site_id=site.id, name="meta",
                     kind="meta", config=META)
    assert (taken.status, taken.code) == (409, "conflict")
    bad = error_of(service.create_destination, sql, BOX, site_id=site.id, name="other",
                   kind="meta", config={"pixel_id": "1"})
    assert bad.status == 422 and "access_token" in bad.fields["config"]
    unknown = error_of(service.create_destination, sql, BOX, site_id=site.id, name="x",
                       kind="tiktok", config={})
    assert set(unknown.fields) == {"kind"}
    missing = error_of(service.get_destination, sql, 999_999)
    assert (missing.status, missing.code) == (404, "unknown_destination")


def test_a_masked_credential_is_kept_unless_the_url_changes(sql):
    site = new_site(sql)
    row = service.create_destination(sql, BOX, site_id=site.id, name="meta", kind="meta",
                                     config=META)
    masked = META | {"access_token": "****6789"}
    service.update_destination(sql, BOX, row, {"config": masked | {"pixel_id": "999"}})
    sql.commit()
    assert BOX.open(row.config) == META | {"pixel_id": "999"}
    moved = error_of(service.update_destination, sql, BOX, row,
                     {"config": masked | {"base_url": "http://127.0.0.1:10"}})
    assert moved.status == 422 and set(moved.fields["config"]) == {"access_token"}
    assert "base_url changed" in moved.message


def test_without_a_key_nothing_is_stored(sql):
    site = new_site(sql)
    with pytest.raises(MissingKey):
        service.create_destination(sql, CredentialBox(()), site_id=site.id, name="meta",
                                   kind="meta", config=META)
    sql.rollback()
    assert sql.scalar(sa.select(sa.func.count()).select_from(ConversionDestination)) == 0


def test_deleting_a_destination_drops_it_from_the_rules(sql):
    site = new_site(sql)
    row = service.create_destination(sql, BOX, site_id=site.id, name="meta", kind="meta",
                                     config=META)
    rule = service.create_rule(sql, site_id=site.id, settings={"currency": "EUR"},
                               actions=[{"destination": row.id, "name": "Lead"}])
    sql.commit()
    assert rule.actions == {str(row.id): {"name": "Lead", "enabled": True}}
    service.delete_destination(sql, row)
    sql.commit()
    assert sql.get(ConversionRule, rule.id).actions == {}


# -- rules ---------------------------------------------------------------------------------


def test_rules_are_created_updated_and_deleted(sql):
    site = new_site(sql)
    rule = service.create_rule(sql, site_id=site.id, settings={
        "value_source": "fixed", "value": "12.5", "min_duration": 30})
    sql.commit()
    assert (str(rule.value), rule.min_duration, rule.managed_by) == ("12.50", 30, "api")
    service.update_rule(sql, rule, {"enabled": False})
    sql.commit()
    assert rule.enabled is False
    cleared = error_of(service.update_rule, sql, rule, {"value": None})
    assert cleared.fields == {"value": "required"}
    sql.rollback()
    other_site = catalog.create_site(sql, name="Other")
    unknown_pool = error_of(service.create_rule, sql, site_id=site.id, pool_id=12345)
    assert set(unknown_pool.fields) == {"pool"}
    bad_action = error_of(service.create_rule, sql, site_id=other_site.id,
                          actions=[{"destination": 999, "name": "x"}])
    assert "destination" in bad_action.fields["actions"]["0"]
    service.delete_rule(sql, rule)
    sql.commit()
    assert sql.get(ConversionRule, rule.id) is None
    assert error_of(service.get_rule, sql, rule.id).code == "unknown_rule"


BAD_RULES = [({"currency": "usd"}, "currency"), ({"unknown_consent": "maybe"}, "unknown_consent"),
             ({"min_duration": "60"}, "min_duration"), ({"min_duration": -1}, "min_duration"),
             ({"dispositions_excluded": ["meh"]}, "dispositions_excluded"),
             ({"value_source": "nope"}, "value_source"), ({"value": "abc"}, "value"),
             ({"value_source": "fixed"}, "value")]


def test_one_rule_validator_gives_the_same_errors_via_api_file_and_service(admin, database_url):
    site = make_site(admin)
    engine = sa.create_engine(database_url)
    with Session(engine) as sql:
        site_id = sql.scalar(sa.text("SELECT id FROM sites WHERE key = :k"), {"k": site["key"]})
        for body, field in BAD_RULES:
            from_service = error_of(service.create_rule, sql, site_id=site_id, settings=body)
            answer = admin.post("/v1/conversions/rules", json={"site": site["key"], **body})
            assert answer.status_code == 422, answer.get_json()
            # The same field and the same words, whichever door the rule came through.
            api_fields = answer.get_json()["error"]["fields"]
            assert api_fields[field] == json.loads(json.dumps(from_service.fields))[field]
            with pytest.raises(ValueError) as from_file:
                service.parse_file({"sites": {"k": {"rule": body}}})
            assert str(from_file.value) == f"sites.k.rule.{service.problem(from_service.fields)}"
    engine.dispose()


def test_one_destination_validator_for_api_file_and_service(admin):
    site = make_site(admin)
    config = {"pixel_id": "1"}
    answer = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "m", "kind": "meta", "config": config})
    with pytest.raises(ConversionsError) as from_service:
        service.check_destination("meta", config)
    assert answer.get_json()["error"]["fields"] == from_service.value.fields
    with pytest.raises(ValueError) as from_file:
        service.parse_file({"sites": {"k": {"destinations": {"m": {"kind": "meta",
                                                                   "config": config}}}}})
    expected = f"sites.k.destinations.m.config: {from_service.value.fields['config']}"
    assert str(from_file.value) == expected


# -- the config file -----------------------------------------------------------------------


def file_document(site_key: str, token: str = SECRET) -> dict:
    return {"sites": {site_key: {
        "destinations": {"meta": {"kind": "meta", "config": META | {"access_token": token}}},
        "rule": {"value_source": "fixed", "value": 20, "currency": "EUR",
                 "actions": {"meta": {"name": " Lead "}}}},
        "site_nobody_has": {"destinations": {}}}}


def test_the_file_is_applied_through_the_service_and_again_in_place(sql):
    site = new_site(sql)
    skipped = service.apply_file(sql, service.parse_file(file_document(site.key)), BOX)
    sql.commit()
    assert skipped == ["site_nobody_has"]
    dest = sql.scalars(sa.select(ConversionDestination)).one()
    rule = sql.scalars(sa.select(ConversionRule)).one()
    assert (dest.managed_by, rule.managed_by, str(rule.value), rule.currency) == (
        "env", "env", "20.00", "EUR")
    assert rule.actions == {str(dest.id): {"name": "Lead", "enabled": True}}
    service.apply_file(sql, file_document(site.key, token="another-token-abcdef"), BOX)
    sql.commit()
    assert sql.scalar(sa.select(sa.func.count()).select_from(ConversionDestination)) == 1
    assert BOX.open(sql.get(ConversionDestination, dest.id).config)["access_token"] == \
        "another-token-abcdef"


def test_a_bad_file_is_refused_alike_at_boot_and_by_the_cli(app, tmp_path):
    from dni_server.config import ConfigError, load_settings

    path = tmp_path / "conversions.json"
    path.write_text(json.dumps({"sites": {"k": {"rule": {"currency": "usd"}}}}))
    with pytest.raises(ConfigError) as at_boot:
        load_settings({"DNI_CONVERSIONS_CONFIG": str(path)})
    result = app.test_cli_runner().invoke(args=["dni", "apply-conversions-config", str(path)])
    assert result.exit_code == 2
    assert "sites.k.rule.currency: must be an ISO 4217 code" in result.output
    assert "sites.k.rule.currency: must be an ISO 4217 code" in str(at_boot.value)


def test_the_cli_applies_a_file_now(app, admin, tmp_path):
    site = make_site(admin)
    path = tmp_path / "conversions.json"
    path.write_text(json.dumps(file_document(site["key"])))
    result = app.test_cli_runner().invoke(args=["dni", "apply-conversions-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "no site 'site_nobody_has': skipped" in result.output
    answer = admin.get("/v1/conversions/destinations").get_json()["destinations"]
    assert [(d["name"], d["managed_by"]) for d in answer] == [("meta", "env")]
    assert SECRET not in json.dumps(answer)


# -- deliveries and exports ----------------------------------------------------------------


def test_deliveries_retry_and_export_ranges(admin, database_url):
    site = make_site(admin)
    pool = make_pool(admin, site, numbers=numbers(1))
    dest = admin.post("/v1/conversions/destinations", json={
        "site": site["key"], "name": "meta", "kind": "meta", "config": META}).get_json()
    admin.post("/v1/conversions/rules", json={
        "site": site["key"], "actions": [{"destination": dest["id"], "name": "Lead"}]})
    number = admin.get(f"/v1/pools/{pool['id']}/numbers").get_json()["numbers"][0]["number"]
    admin.post("/v1/calls", json={"call_id": "c-1", "from": "+14158675309", "to": number,
                                  "started_at": "2026-03-01T18:45:00Z", "duration": 90})
    engine = sa.create_engine(database_url)
    with Session(engine) as sql:
        row = sql.scalars(service.deliveries_query(status="pending")).one()
        assert error_of(service.retry_delivery, row).status == 409
        row.status = "failed"
        service.retry_delivery(row)
        sql.commit()
        assert sql.get(ConversionDelivery, row.id).status == "pending"
        delivery, call = service.get_delivery(sql, row.id)
        assert call.id == delivery.call_id and service.attempts_of(sql, row.id) == []
        assert set(error_of(service.deliveries_query, status="nope").fields) == {"status"}
    engine.dispose()
    day = dt.date(2026, 3, 1)
    assert set(error_of(service.check_export_range, day, day - dt.timedelta(days=1),
                        10).fields) == {"start"}
    assert set(error_of(service.check_export_range, day, day + dt.timedelta(days=10),
                        10).fields) == {"range"}
    service.check_export_range(day, day + dt.timedelta(days=9), 10)
