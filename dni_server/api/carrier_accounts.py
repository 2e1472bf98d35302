"""Carrier accounts and the numbers bought through them (admin API, issue 19).

Accounts hold an operator's carrier credentials: publishers never see them, and secrets are
write-only (masked in every answer, sealed at rest). Searching and buying call the carrier;
its failures are a 502 ``carrier_error`` (nothing bought), never a 500.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from attribution.conversions.credentials import CredentialBox, MissingKey
from attribution.numbers import accounts, provisioning, release
from attribution.numbers.accounts import AccountError, CarrierUrls
from attribution.numbers.carriers import CarrierError, SearchQuery, Webhooks
from attribution.numbers.models import CarrierAccount, ProvisionedNumber
from dni_server.api.admin import get_pool, limit_arg
from dni_server.api.auth import deny_publishers, token_required
from dni_server.api.body import json_object
from dni_server.api.number_schemas import (
    AccountCheckSchema,
    AvailableNumberListSchema,
    CarrierAccountCreateSchema,
    CarrierAccountListSchema,
    CarrierAccountSchema,
    CarrierAccountUpdateSchema,
    ProvisionedNumberListSchema,
    ProvisionedNumberSchema,
    ProvisionReportSchema,
    ProvisionRequestSchema,
    ReleaseRequestSchema,
    SearchQuerySchema,
)
from dni_server.api.schemas import With
from dni_server.errors import ApiError, Conflict, Invalid, NotFound
from dni_server.extensions import db
from dni_server.openapi import documented
from dni_server.timefmt import now_ms

bp = token_required(Blueprint("carrier_accounts", __name__))
bp.before_request(deny_publishers)  # operators' credentials: never a publisher's business

account_create, account_update = CarrierAccountCreateSchema(), CarrierAccountUpdateSchema()
account_schema, check_schema = CarrierAccountSchema(), AccountCheckSchema()
search_schema, provision_schema = SearchQuerySchema(), ProvisionRequestSchema()
available_list, report_schema = AvailableNumberListSchema(), ProvisionReportSchema()
account_list, provisioned_list = CarrierAccountListSchema(), ProvisionedNumberListSchema()
release_request = ReleaseRequestSchema()
CARRIER_ERROR = (502, "carrier_error: the carrier refused or could not be reached")
KEY_MISSING = (409, "a conflict, or credentials_key_missing")
UNREADABLE = (409, "credentials_unreadable: sealed with a key no longer configured")


def credential_box() -> CredentialBox:
    return CredentialBox(current_app.extensions["dni"].settings.credentials_keys)


def carrier_urls() -> CarrierUrls:
    settings = current_app.extensions["dni"].settings
    return CarrierUrls(twilio=settings.twilio_api_url, telnyx=settings.telnyx_api_url)


def webhooks() -> Webhooks:
    """This service's Twilio webhook URLs, on DNI_PUBLIC_URL (else the URL asked on)."""
    base = current_app.extensions["dni"].settings.public_url or request.url_root.rstrip("/")
    return Webhooks(f"{base}/webhooks/twilio/voice", f"{base}/webhooks/twilio/status")


def service(fn, *args, commit: bool = False, **kwargs):
    """Run a service function, its domain errors as the one error shape."""
    try:
        result = fn(*args, **kwargs)
        if commit:
            db.session.commit()
        return result
    except AccountError as exc:
        db.session.rollback()
        raise ApiError(exc.message, status=exc.status, code=exc.code, fields=exc.fields) \
            from None
    except MissingKey as exc:
        db.session.rollback()
        raise Conflict(str(exc), code="credentials_key_missing") from None
    except CarrierError as exc:
        db.session.rollback()
        raise ApiError(exc.message, status=502, code="carrier_error") from None
    except IntegrityError:
        db.session.rollback()
        raise Conflict("that conflicts with an existing record") from None


def account_view(account: CarrierAccount) -> dict:
    return account_schema.dump(With(account,
                                    credentials=accounts.masked(account, credential_box())))


def get_account(ref) -> CarrierAccount:
    return service(accounts.get, db.session, ref)


# -- accounts --------------------------------------------------------------------------------


@bp.post("/v1/carrier-accounts")
@documented("Add a carrier account (Twilio or Telnyx); secrets are shown masked from then on",
            account_schema, status=201, body=CarrierAccountCreateSchema,
            errors=(400, 401, 403, KEY_MISSING, 422))
def create_account():
    data = account_create.load(json_object())
    account = service(accounts.create, db.session, credential_box(), name=data["name"],
                      carrier=data["carrier"], credentials=data["credentials"], commit=True)
    return jsonify(account_view(account)), 201


@bp.get("/v1/carrier-accounts")
@documented("List carrier accounts (secrets masked)", account_list, errors=(401, 403))
def list_accounts():
    rows = db.session.scalars(select(CarrierAccount).order_by(CarrierAccount.id)
                              .limit(limit_arg()))
    return jsonify(accounts=[account_view(r) for r in rows])


@bp.get("/v1/carrier-accounts/<int:account_id>")
@documented("Show a carrier account (secrets masked)", account_schema, errors=(401, 403, 404))
def show_account(account_id: int):
    return jsonify(account_view(get_account(account_id)))


@bp.patch("/v1/carrier-accounts/<int:account_id>")
@documented("Rename an account or replace its credentials", account_schema,
            body=CarrierAccountUpdateSchema, errors=(400, 401, 403, 404, KEY_MISSING, 422))
def update_account(account_id: int):
    account = get_account(account_id)
    data = account_update.load(json_object())
    service(accounts.update, db.session, credential_box(), account, data, commit=True)
    return jsonify(account_view(account))


@bp.delete("/v1/carrier-accounts/<int:account_id>")
@documented("Delete an account no number was bought through", account_schema,
            errors=(401, 403, 404, 409))
def delete_account(account_id: int):
    account = get_account(account_id)
    view = account_view(account)
    service(accounts.delete, db.session, account, commit=True)
    return jsonify(view)


@bp.post("/v1/carrier-accounts/<int:account_id>/test")
@documented("Check the account's credentials against the carrier", check_schema,
            errors=(401, 403, 404))
def test_account(account_id: int):
    """200 either way: ``ok`` says whether the carrier took the credentials."""
    account = get_account(account_id)
    try:
        described = accounts.api_for(account, credential_box(), carrier_urls()).check()
    except CarrierError as exc:
        return jsonify(check_schema.dump({"ok": False, "error": exc.message,
                                          "carrier_status": exc.status}))
    except AccountError as exc:  # the credentials key was removed
        return jsonify(check_schema.dump({"ok": False, "error": exc.message}))
    return jsonify(check_schema.dump({"ok": True, "account": described}))


# -- numbers ---------------------------------------------------------------------------------

SEARCH_PARAMETERS = (
    ("country", "ISO country code (default US)", {"type": "string"}),
    ("area_code", "area code (US, CA) / national destination code", {"type": "string"}),
    ("contains", "digits (or * for any digit) the number contains", {"type": "string"}),
    ("region", "state or province (CA, ON)", {"type": "string"}),
    ("toll_free", "true for toll-free numbers", {"type": "boolean"}),
    ("limit", "at most this many (1-50, default 20)", {"type": "integer"}),
)


@bp.get("/v1/carrier-accounts/<int:account_id>/available-numbers")
@documented("Search the carrier for numbers to buy", available_list, query=SEARCH_PARAMETERS,
            errors=(401, 403, 404, UNREADABLE, 422, CARRIER_ERROR))
def available_numbers(account_id: int):
    account = get_account(account_id)
    args = {k: v for k, v in request.args.items() if v != ""}  # contains= means no filter
    query = SearchQuery(**search_schema.load(args))
    api = service(accounts.api_for, account, credential_box(), carrier_urls())
    found = service(api.search, query)
    return jsonify(available_list.dump({"numbers": found}))


@bp.post("/v1/pools/<int:pool_id>/provision")
@documented("Buy numbers into the pool; idempotent with an Idempotency-Key header",
            report_schema, status=201, body=ProvisionRequestSchema,
            errors=(400, 401, 403, 404, (409, "idempotency key reused for another request, "
                                              "or credentials_unreadable"), 422, CARRIER_ERROR))
def provision(pool_id: int):
    """Buy and add each number, reporting each bought or failed. A retry with the same key
    answers the first request's numbers (200, ``replayed``) and buys nothing."""
    pool = get_pool(pool_id)
    data = provision_schema.load(json_object())
    key = request.headers.get("Idempotency-Key") or data["request_id"]
    if not key or not 8 <= len(key) <= 128:
        raise Invalid("send an Idempotency-Key header (8 to 128 characters): a retried "
                      "request must not buy twice", fields={"Idempotency-Key": "required"})
    account = get_account(data["account"])
    query = SearchQuery(country=data["country"], area_code=data["area_code"],
                        contains=data["contains"], region=data["region"],
                        toll_free=data["toll_free"])
    api = service(accounts.api_for, account, credential_box(), carrier_urls())
    report = service(provisioning.provision, db.session, current_app.extensions["dni"].pools,
                     pool, account, api, count=data["count"], query=query,
                     request_key=f"pool:{pool.id}:{key}", hooks=webhooks(), now_ms=now_ms())
    body = report_schema.dump({"order_id": report.order.id, "replayed": report.replayed,
                               "requested": report.order.count, "shortfall": report.shortfall,
                               "numbers": report.numbers})
    return jsonify(body), 200 if report.replayed else 201


@bp.get("/v1/provisioned-numbers")
@documented("Numbers bought through this service (query: pool, account, state)",
            provisioned_list, errors=(401, 403, 422))
def list_provisioned():
    query = select(ProvisionedNumber).order_by(ProvisionedNumber.id.desc())
    for name, column in (("pool", ProvisionedNumber.pool_id),
                         ("account", ProvisionedNumber.account_id)):
        if (raw := request.args.get(name)) is not None:
            if not raw.isdigit() or len(raw) > 12:
                raise Invalid(f"{name} must be an id", fields={name: "not an id"})
            query = query.where(column == int(raw))
    if state := request.args.get("state"):
        query = query.where(ProvisionedNumber.state == state)
    rows = db.session.scalars(query.limit(limit_arg(100, 1000)))
    return jsonify(provisioned_list.dump({"numbers": rows}))


@bp.post("/v1/provisioned-numbers/<int:number_id>/release")
@documented("Retire a bought number from its pool and release it at the carrier once its "
            "quarantine, its last lease and the pool's attribution window have ended",
            ProvisionedNumberSchema(), body=ReleaseRequestSchema,
            errors=(400, 401, 403, 404, (409, "not in a pool"), 422))
def release_number(number_id: int):
    row = db.session.get(ProvisionedNumber, number_id)
    if row is None:
        raise NotFound(f"unknown provisioned number {number_id}", code="not_found")
    data = release_request.load(json_object())
    quarantine = dt.timedelta(hours=data["quarantine_hours"])
    service(release.retire, db.session, current_app.extensions["dni"].pools, row,
            quarantine=quarantine, now_ms=now_ms(), commit=True)
    return jsonify(ProvisionedNumberSchema().dump(row))
