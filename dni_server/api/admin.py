"""The admin API (bearer token): sites, pools, pool numbers, and the sessions they served."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError

from attribution.models import StaticNumber, Visit
from dni_server.api import autoscale as autoscale_api
from dni_server.api.auth import (
    deny_publishers,
    publisher_scope,
    scoped,
    token_required,
    visible,
)
from dni_server.api.body import json_object
from dni_server.api.routing_admin import check_routing_plan, routing_changed
from dni_server.api.schemas import (
    NumberReportSchema,
    NumbersSchema,
    PoolCreateSchema,
    PoolDetailSchema,
    PoolHealthSchema,
    PoolListSchema,
    PoolNumberListSchema,
    PoolNumberSchema,
    PoolSettingsSchema,
    SiteListSchema,
    SiteSchema,
    TokenCreatedSchema,
    TokenListSchema,
    TokenSchema,
    VisitDetailSchema,
    VisitListSchema,
    With,
)
from dni_server.api.sessions import JOURNEY_PARAMETERS, journey_page
from dni_server.converters import count_arg, datetime_arg, parse_id
from dni_server.errors import ApiError, Conflict, Invalid, NotFound
from dni_server.extensions import db, services
from dni_server.openapi import documented
from dni_server.timefmt import now_ms
from pools import catalog
from pools.catalog import CatalogError
from pools.errors import PoolUnavailable
from pools.models import Lease, Pool, PoolNumber, Site, utcnow

bp = token_required(Blueprint("admin", __name__))
site_schema = SiteSchema()
site_update = SiteSchema(partial=True)
site_list = SiteListSchema()
pool_create = PoolCreateSchema()
pool_update = PoolSettingsSchema()
pool_detail = PoolDetailSchema()
pool_list = PoolListSchema()
pool_health_schema = PoolHealthSchema()
numbers_schema = NumbersSchema()
number_report = NumberReportSchema()
number_schema = PoolNumberSchema()
number_list = PoolNumberListSchema()
visit_list = VisitListSchema()
visit_detail = VisitDetailSchema()
token_schema = TokenSchema()
token_created = TokenCreatedSchema()
token_list = TokenListSchema()


def limit_arg(default: int = 100, maximum: int = 1000) -> int:
    return count_arg(request.args, "limit", default, 1, maximum)


def catalog_call(fn, *args, **kwargs):
    """Run a catalog change, turning its failures into API errors and committing it."""
    try:
        result = fn(*args, **kwargs)
        db.session.commit()
    except CatalogError as exc:
        db.session.rollback()
        raise ApiError(str(exc), fields=exc.fields, status=exc.status,
                       code="invalid" if exc.status == 422 else "not_found") from None
    except IntegrityError:
        db.session.rollback()
        raise Conflict("that conflicts with an existing record (a number already in use?)") \
            from None
    except PoolUnavailable:
        db.session.rollback()
        raise ApiError("Redis is unavailable; nothing was changed", status=409,
                       code="unavailable") from None
    return result


# -- sites -------------------------------------------------------------------------------


def get_site(ref, lookup_only: bool = False) -> Site:
    """A site by id or key; publisher tokens may only name one to filter by it.

    A publisher gets the same 404 for a site that does not exist and for one where it has
    no pool and no static number, so ``?site=`` cannot tell it which other sites exist.
    """
    if not lookup_only:
        deny_publishers()
    site = _find_site(ref)
    scope = publisher_scope()
    if site is None or (scope is not None and not db.session.scalar(select(or_(
            exists().where(Pool.site_id == site.id, Pool.publisher == scope),
            exists().where(StaticNumber.site_id == site.id, StaticNumber.publisher == scope))))):
        raise NotFound(f"unknown site {ref!r}", code="unknown_site")
    return site


def _find_site(ref) -> Site | None:
    site = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        site_id = parse_id(ref)
        site = db.session.get(Site, site_id) if site_id is not None else None
    elif isinstance(ref, str):
        site = db.session.scalar(select(Site).where(Site.key == ref))
    return site


@bp.post("/v1/sites")
@documented("Create a site", site_schema, status=201, body=SiteSchema, errors=(400, 401, 422))
def create_site():
    data = site_schema.load(json_object())
    insight = {name: data.pop(name) for name in ("insight_keywords", "recording_retention_days")
               if name in data}
    site = catalog_call(catalog.create_site, db.session, **data)
    if insight:
        for name, value in insight.items():
            setattr(site, name, value)
        db.session.commit()
    return jsonify(site_schema.dump(site)), 201


@bp.get("/v1/sites")
@documented("List sites", site_list, errors=(401,))
def list_sites():
    deny_publishers()
    rows = db.session.scalars(select(Site).order_by(Site.id).limit(limit_arg()))
    return jsonify(site_list.dump({"sites": rows}))


@bp.get("/v1/sites/<int:site_id>")
@documented("Show a site", site_schema, errors=(401, 404))
def show_site(site_id: int):
    deny_publishers()
    return jsonify(site_schema.dump(get_site(site_id)))


@bp.patch("/v1/sites/<int:site_id>")
@documented("Update a site", site_schema, body=SiteSchema, errors=(400, 401, 404, 422))
def update_site(site_id: int):
    site = get_site(site_id)
    for name, value in site_update.load(json_object()).items():
        setattr(site, name, value)
    db.session.commit()
    services().sessions.sites.invalidate(site.key)
    return jsonify(site_schema.dump(site))


# -- pools -------------------------------------------------------------------------------


def get_pool(pool_id: int) -> Pool:
    pool = db.session.get(Pool, pool_id)
    if not visible(pool):
        raise NotFound(f"unknown pool {pool_id}", code="unknown_pool")
    return pool


def pool_view(pool: Pool) -> dict:
    """A pool with its number counts and its live Redis state (None when Redis is away)."""
    counts = dict(db.session.execute(
        select(PoolNumber.status, db.func.count()).where(PoolNumber.pool_id == pool.id)
        .group_by(PoolNumber.status)).all())
    try:
        live = services().pools.status(pool.id, now_ms())
    except PoolUnavailable:
        live = None
    return pool_detail.dump(With(pool, live=live, numbers={
        status: counts.get(status, 0) for status in ("active", "retiring", "retired")},
        autoscale=autoscale_api.policy_view(pool)))


@bp.post("/v1/pools")
@documented("Create a pool with its numbers", pool_detail, status=201, body=PoolCreateSchema,
            errors=(400, 401, 404, 409, 422))
def create_pool():
    data = pool_create.load(json_object())
    site = get_site(data.pop("site"))
    region = data.pop("region")
    numbers = data.pop("numbers")
    autoscale = autoscale_api.policy_change(data)
    routed = check_routing_plan(data, data.get("publisher"))
    pool, _ = catalog_call(catalog.create_pool, db.session, services().pools, site,
                           numbers=numbers, region=region, now_ms=now_ms(), **data)
    autoscale_api.save_change(pool, autoscale)
    services().sessions.sites.invalidate(site.key)
    if routed:
        routing_changed()
    return jsonify(pool_view(pool)), 201


@bp.get("/v1/pools")
@documented("List pools", pool_list, errors=(401, 404))
def list_pools():
    query = scoped(select(Pool).order_by(Pool.id).limit(limit_arg()), Pool.publisher)
    if "site" in request.args:
        query = query.where(Pool.site_id == get_site(request.args["site"], lookup_only=True).id)
    return jsonify(pool_list.dump({"pools": db.session.scalars(query)}))


@bp.get("/v1/pools/<int:pool_id>")
@documented("Show a pool with its live state", pool_detail, errors=(401, 404))
def show_pool(pool_id: int):
    return jsonify(pool_view(get_pool(pool_id)))


@bp.patch("/v1/pools/<int:pool_id>")
@documented("Update a pool's settings", pool_detail, body=PoolSettingsSchema,
            errors=(400, 401, 404, 409, 422))
def update_pool(pool_id: int):
    pool = get_pool(pool_id)
    changes = pool_update.load(json_object())
    autoscale = autoscale_api.policy_change(changes, pool)
    routed = check_routing_plan(changes, changes.get("publisher", pool.publisher))
    catalog_call(catalog.update_pool, db.session, services().pools, pool, changes,
                 now_ms=now_ms())
    autoscale_api.save_change(pool, autoscale)
    services().sessions.sites.invalidate(pool.site.key)
    if routed or "publisher" in changes:
        routing_changed()
    return jsonify(pool_view(pool))


@bp.post("/v1/pools/<int:pool_id>/numbers")
@documented("Add numbers (each rejected one is reported)", number_report, status=201,
            body=NumbersSchema, errors=(400, 401, 404, 422))
def add_numbers(pool_id: int):
    pool = get_pool(pool_id)
    data = numbers_schema.load(json_object())
    report = catalog_call(catalog.add_numbers, db.session, services().pools, pool,
                          data["numbers"], region=data["region"], now_ms=now_ms())
    if not report.accepted:
        raise Invalid("none of the numbers can be added",
                      fields={"numbers": {r.raw: r.reason for r in report.rejected}})
    return jsonify(number_report.dump(report)), 201


@bp.get("/v1/pools/<int:pool_id>/numbers")
@documented("List a pool's numbers", number_list, errors=(401, 404))
def list_numbers(pool_id: int):
    pool = get_pool(pool_id)
    query = select(PoolNumber).where(PoolNumber.pool_id == pool.id).order_by(PoolNumber.id)
    if status := request.args.get("status"):
        query = query.where(PoolNumber.status == status)
    rows = db.session.scalars(query.limit(limit_arg(1000, 10_000)))
    return jsonify(number_list.dump({"numbers": rows}))


@bp.delete("/v1/pools/<int:pool_id>/numbers/<number>")
@documented("Retire a number (a leased one when its lease ends)", number_schema,
            errors=(401, 404))
def retire_number(pool_id: int, number: str):
    """Retire a number; one leased now stays with its visitor until the lease ends."""
    pool = get_pool(pool_id)
    row = catalog_call(catalog.retire_number, db.session, services().pools, pool,
                       number.strip(), now_ms=now_ms())
    return jsonify(number_schema.dump(row))


# -- sessions (what the snippet's visitors did) --------------------------------------------


@bp.get("/v1/sessions")
@documented("List recent sessions (admin)", visit_list, errors=(401, 422))
def list_sessions():
    deny_publishers()
    query = select(Visit).order_by(Visit.created_at.desc()).limit(limit_arg())
    if "site" in request.args:
        query = query.where(Visit.site_id == get_site(request.args["site"]).id)
    return jsonify(visit_list.dump({"sessions": db.session.scalars(query)}))


@bp.get("/v1/sessions/<session_id>")
@documented("A session with a page of its page views and its leases (admin)", visit_detail,
            query=JOURNEY_PARAMETERS, errors=(
                401, 404, (422, "page_views_offset or page_views_limit out of range")))
def show_session(session_id: str):
    deny_publishers()
    visit = db.session.get(Visit, session_id)
    if visit is None:
        raise NotFound("unknown session (new sessions appear within a few seconds)",
                       code="unknown_session")
    # Paged: ?page_views_offset=&page_views_limit= (see dni_server.api.sessions).
    journey = journey_page(db.session, session_id)
    leases = db.session.scalars(select(Lease).where(Lease.session_id == session_id)
                                .order_by(Lease.started_at_ms))
    return jsonify(visit_detail.dump(With(visit, pages=journey.views, page_views=journey,
                                          leases=leases)))


@bp.get("/v1/pools/<int:pool_id>/health")
@documented("Pool health (query: start, end, target, accuracy_target): utilisation per "
            "hour, peak leases, exhaustion, recommended size with its reasoning, and expected "
            "attribution accuracy against pool size", pool_health_schema,
            errors=(401, 404, 422))
def pool_health(pool_id: int):
    """Utilisation per hour, peaks, exhaustion and a recommended size, from the history."""
    import datetime as dt
    import zoneinfo

    from attribution.pool_health import health

    pool = get_pool(pool_id)
    # Times without an offset are the site's local time, like the report's dates.
    zone = zoneinfo.ZoneInfo(pool.site.timezone or "UTC")
    end = datetime_arg(request.args, "end", dt.datetime.now(dt.UTC), zone)
    start = datetime_arg(request.args, "start", end - dt.timedelta(days=7), zone)
    try:
        target = float(request.args.get("target", "0.01"))
    except ValueError as exc:
        raise Invalid(f"bad parameter: {exc}", fields={"target": str(exc)}) from None
    if end <= start or not 0 < target < 1:
        raise Invalid("end must be after start, and 0 < target < 1",
                      fields={"end": "before start"} if end <= start else {"target": "range"})
    try:
        accuracy_target = float(request.args.get("accuracy_target", "0.99"))
    except ValueError as exc:
        raise Invalid(f"bad parameter: {exc}", fields={"accuracy_target": str(exc)}) from None
    if not 0.5 <= accuracy_target <= 0.9999:  # also refuses nan
        raise Invalid("accuracy_target must be between 0.5 and 0.9999",
                      fields={"accuracy_target": "between 0.5 and 0.9999"})
    return jsonify(pool_health_schema.dump(health(db.session, pool, start, end, target, zone,
                                                  accuracy_target)))


# -- tokens ----------------------------------------------------------------------------------


@bp.post("/v1/tokens")
@documented("Create a token (admin, read_only, or publisher); the secret is shown once",
            token_created, status=201, body=TokenSchema, errors=(400, 401, 403, 422))
def create_token():
    """A new token, shown once: admin, read_only, or publisher (with its publisher label)."""
    from dni_server.api.auth import require_admin
    from dni_server.tokens import create_token as make

    require_admin()
    data = token_schema.load(json_object())
    if (data["scope"] == "publisher") != bool(data["publisher"]):
        raise Invalid("a publisher token names its publisher, and only it does",
                      fields={"publisher": "required with scope publisher, else not allowed"})
    row, secret = make(db.session, data["name"], data["scope"], data["publisher"])
    db.session.commit()
    return jsonify(token_created.dump(With(row, token=secret))), 201


@bp.get("/v1/tokens")
@documented("List tokens (never their secrets)", token_list, errors=(401, 403))
def list_tokens():
    from dni_server.api.auth import require_admin
    from dni_server.tokens import ApiToken

    require_admin()
    rows = db.session.scalars(select(ApiToken).order_by(ApiToken.id))
    return jsonify(token_list.dump({"tokens": rows}))


@bp.delete("/v1/tokens/<int:token_id>")
@documented("Revoke a token", token_schema, errors=(401, 403, 404))
def revoke_token(token_id: int):
    from dni_server.api.auth import require_admin
    from dni_server.tokens import ApiToken

    require_admin()
    row = db.session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"unknown token {token_id}", code="unknown_token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
    return jsonify(token_schema.dump(row))
