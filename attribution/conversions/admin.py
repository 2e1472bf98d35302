"""Offline conversions, administered: destinations, rules, deliveries and exports' queries.

The one door for every change, whoever asks: the admin API, the JSON config file
(DNI_CONVERSIONS_CONFIG) and the CLI. Plain values in, an SQL session, domain errors out
(``ConversionsError``; ``MissingKey`` when credentials cannot be encrypted). Nothing here
commits: the caller does, once, at its edge.

One validator each: ``check_destination`` for a destination's kind and config,
``check_rule`` (the ``RuleSettings`` schema) for a rule's settings.
"""

from __future__ import annotations

import datetime as dt
import logging

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from attribution.conversions import outbox
from attribution.conversions.base import Conversion
from attribution.conversions.credentials import CredentialBox, is_url_key
from attribution.conversions.models import (
    DESTINATION_KINDS,
    STATUSES,
    VALUE_SOURCES,
    ConversionAttempt,
    ConversionDelivery,
    ConversionDestination,
    ConversionRule,
)
from attribution.conversions.registry import build_destination
from attribution.conversions.rules import CONSENT_CHOICES
from attribution.models import Call
from attribution.qualification import DISPOSITIONS
from pools.models import Pool, Site

log = logging.getLogger(__name__)
MASKED = "****"  # how a credential is shown; sent back, it means "keep the stored one"
MAX_MONEY = 10_000_000


class ConversionsError(ValueError):
    """A change that cannot be made: ``status`` (422, 404, 409), a stable ``code`` and
    ``fields`` mapping each bad field to its problem."""

    def __init__(self, message: str, fields: dict | None = None, status: int = 422,
                 code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or None
        self.status = status
        self.code = code or {404: "not_found", 409: "conflict"}.get(status, "invalid")


# -- the validators -------------------------------------------------------------------------


def _money(value) -> None:
    # A function, not validate.Range: the OpenAPI document would show Decimal bounds as text.
    if not 0 <= value <= MAX_MONEY:
        raise ValidationError("must be an amount from 0 to 10,000,000")


_dispositions = fields.List(fields.String(validate=validate.OneOf(sorted(DISPOSITIONS))),
                            validate=validate.Length(max=20))


class RuleSettings(Schema):
    """A rule's settings (everything but where it applies and its actions)."""

    class Meta:
        unknown = EXCLUDE  # the API ignores unknown fields; the file refuses them itself

    qualified_only = fields.Boolean()
    buyer_converted_only = fields.Boolean()
    min_duration = fields.Integer(strict=True, allow_none=True,
                                  validate=validate.Range(0, 86_400))
    dispositions_included = _dispositions
    dispositions_excluded = _dispositions
    value_source = fields.String(validate=validate.OneOf(VALUE_SOURCES))
    value = fields.Decimal(places=2, allow_none=True, as_string=True, validate=_money)
    currency = fields.String(validate=validate.Regexp(r"^[A-Z]{3}$",
                                                      error="must be an ISO 4217 code"))
    unknown_consent = fields.String(validate=validate.OneOf(CONSENT_CHOICES))
    enabled = fields.Boolean()


class WholeRule(RuleSettings):
    """A new rule's settings: a fixed value needs the value."""

    @validates_schema
    def _fixed_needs_value(self, data, **_):
        if data.get("value_source") == "fixed" and data.get("value") is None:
            raise ValidationError("a fixed value_source needs a value", "value")


class ActionSettings(Schema):
    """What one destination gets from a rule: the conversion's name there."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    enabled = fields.Boolean(load_default=True)


RULE_SETTINGS, WHOLE_RULE = RuleSettings(), WholeRule()
RULE_KEYS = frozenset(RULE_SETTINGS.fields) | {"actions"}


def check_destination(kind: str, config: object) -> dict:
    """The one check of a destination: a known kind, and a config its platform accepts."""
    if kind not in DESTINATION_KINDS:
        raise ConversionsError("unknown destination kind",
                               {"kind": f"must be one of {', '.join(DESTINATION_KINDS)}"})
    if not isinstance(config, dict):
        raise ConversionsError("the destination's config is invalid",
                               {"config": "must be an object"})
    try:
        build_destination(kind, config)
    except ValueError as exc:
        raise ConversionsError("the destination's config is invalid",
                               {"config": str(exc)}) from None
    return config


def check_rule(data: dict, *, whole: bool = True) -> dict:
    """The one check of a rule's settings; ``whole`` for a new rule, not a change to one.

    Returns the settings as they are stored (a Decimal value, ...)."""
    try:
        return (WHOLE_RULE if whole else RULE_SETTINGS).load(data)
    except ValidationError as exc:
        raise ConversionsError("the rule has invalid fields", exc.messages) from None


def _require_value(value_source: str | None, value) -> None:
    """After a change to a stored rule: a fixed value still needs the value."""
    if value_source == "fixed" and value is None:
        raise ConversionsError("a fixed value_source needs a value", {"value": "required"})


def url_like(name: str, value) -> bool:
    """Config fields that say where requests go: ``*_url`` keys, and any http(s) URL."""
    return is_url_key(name) or (isinstance(value, str)
                                and value.strip().lower().startswith(("http://", "https://")))


# -- destinations ---------------------------------------------------------------------------


def get_destination(db: Session, destination_id: int) -> ConversionDestination:
    row = db.get(ConversionDestination, destination_id)
    if row is None:
        raise ConversionsError(f"unknown destination {destination_id}", status=404,
                               code="unknown_destination")
    return row


def destinations_query(site_id: int | None = None) -> Select:
    query = select(ConversionDestination).order_by(ConversionDestination.id)
    if site_id is not None:
        query = query.where(ConversionDestination.site_id == site_id)
    return query


def create_destination(db: Session, box: CredentialBox, *, site_id: int, name: str, kind: str,
                       config: dict, enabled: bool = True,
                       managed_by: str = "api") -> ConversionDestination:
    _name_free(db, site_id, name)
    row = ConversionDestination(site_id=site_id, name=name, managed_by=managed_by)
    _configure(row, box, kind, config)
    row.enabled = enabled
    db.add(row)
    db.flush()
    return row


def update_destination(db: Session, box: CredentialBox, row: ConversionDestination,
                       changes: dict) -> ConversionDestination:
    """Rename, reconfigure, enable or disable. A masked credential sent back keeps the
    stored one, unless a URL changes (then every credential must be entered again)."""
    if "name" in changes:
        _name_free(db, row.site_id, changes["name"], row.id)
        row.name = changes["name"]
    if "config" in changes:
        config = kept_credentials(_opened(box, row), changes["config"])
        _configure(row, box, row.kind, config)
    if "enabled" in changes:
        row.enabled = changes["enabled"]
    db.flush()
    return row


def delete_destination(db: Session, row: ConversionDestination) -> None:
    """Delete a destination nothing was delivered to, and drop it from its site's rules."""
    if db.scalar(select(ConversionDelivery.id).where(
            ConversionDelivery.destination_id == row.id).limit(1)):
        raise ConversionsError(
            "the destination has deliveries; disable it instead (enabled: false)", status=409)
    for rule in db.scalars(select(ConversionRule).where(ConversionRule.site_id == row.site_id)):
        if str(row.id) in (rule.actions or {}):
            rule.actions = {k: v for k, v in rule.actions.items() if k != str(row.id)}
    db.delete(row)
    db.flush()


def kept_credentials(old: dict, given: dict) -> dict:
    """``given`` with masked credentials sent back replaced by the stored ones.

    If a URL changes (where requests, and so credentials, are sent), a masked value is
    refused: the credential must be entered again (naming the field).
    """
    if not isinstance(given, dict):
        return given  # check_destination names the problem
    masked = [k for k, v in given.items()
              if isinstance(v, str) and v.startswith(MASKED) and k in old]
    merged = {k: old[k] if k in masked else v for k, v in given.items()}
    moved = sorted(k for k in {**old, **merged} if url_like(k, old.get(k) or merged.get(k))
                   and old.get(k) != merged.get(k))
    stale = [k for k in masked if not url_like(k, old[k])]
    if moved and stale:
        raise ConversionsError(
            f"{', '.join(moved)} changed: enter the credentials again, stored ones are not "
            "sent to a new address",
            {"config": {k: "must be entered again when the URL changes" for k in stale}})
    return merged


def _configure(row: ConversionDestination, box: CredentialBox, kind: str, config: dict) -> None:
    """Check ``config`` and store it with its credentials encrypted (MissingKey without a
    key)."""
    row.kind, row.config = kind, box.seal(check_destination(kind, config))


def _opened(box: CredentialBox, row: ConversionDestination) -> dict:
    try:
        return box.open(row.config)
    except ValueError:  # a key was removed: what can be read, read
        return dict(row.config or {})


def _name_free(db: Session, site_id: int, name: str, exclude: int | None = None) -> None:
    other = db.scalar(select(ConversionDestination.id).where(
        ConversionDestination.site_id == site_id, ConversionDestination.name == name,
        ConversionDestination.id != (exclude or 0)))
    if other:
        raise ConversionsError(f"the site already has a destination named {name!r}",
                               status=409)


# -- rules ----------------------------------------------------------------------------------


def get_rule(db: Session, rule_id: int) -> ConversionRule:
    row = db.get(ConversionRule, rule_id)
    if row is None:
        raise ConversionsError(f"unknown rule {rule_id}", status=404, code="unknown_rule")
    return row


def rules_query(site_id: int | None = None) -> Select:
    query = select(ConversionRule).order_by(ConversionRule.id)
    if site_id is not None:
        query = query.where(ConversionRule.site_id == site_id)
    return query


def create_rule(db: Session, *, site_id: int, pool_id: int | None = None,
                settings: dict | None = None, actions: list[dict] | None = None,
                managed_by: str = "api") -> ConversionRule:
    """A rule for a site, or for one of its pools. ``actions``: ``[{"destination": id,
    "name": ..., "enabled"?: bool}]``, destinations of the same site."""
    if pool_id is not None:
        pool = db.get(Pool, pool_id)
        if pool is None or pool.site_id != site_id:
            raise ConversionsError("unknown pool", {"pool": f"no pool {pool_id} on this site"})
    row = ConversionRule(site_id=site_id, pool_id=pool_id, managed_by=managed_by)
    _apply_rule(db, row, settings or {}, actions)
    db.add(row)
    db.flush()
    return row


def update_rule(db: Session, row: ConversionRule, settings: dict | None = None,
                actions: list[dict] | None = None) -> ConversionRule:
    """Change some settings (and, when given, replace the actions)."""
    _apply_rule(db, row, settings or {}, actions, whole=False)
    db.flush()
    return row


def delete_rule(db: Session, row: ConversionRule) -> None:
    """Delete a rule; its deliveries stay, no longer pointing at it."""
    db.execute(update(ConversionDelivery).where(ConversionDelivery.rule_id == row.id)
               .values(rule_id=None))
    db.delete(row)
    db.flush()


def _apply_rule(db: Session, row: ConversionRule, settings: dict, actions: list[dict] | None,
                whole: bool = True) -> None:
    for name, value in check_rule(settings, whole=whole).items():
        setattr(row, name, value)
    if actions is not None:
        row.actions = rule_actions(db, row.site_id, actions)
    _require_value(row.value_source, row.value)


def rule_actions(db: Session, site_id: int, actions: list[dict]) -> dict:
    """The actions as a rule stores them (destination id -> name, enabled), each checked."""
    known = set(db.scalars(select(ConversionDestination.id).where(
        ConversionDestination.site_id == site_id)))
    out = {}
    for i, action in enumerate(actions):
        try:
            settings = ActionSettings().load(action)
        except ValidationError as exc:
            raise ConversionsError("invalid actions", {"actions": {str(i): exc.messages}}) \
                from None
        if action.get("destination") not in known:
            raise ConversionsError("unknown destination in actions", {"actions": {
                str(i): {"destination": f"no destination {action.get('destination')} "
                                        "on this site"}}})
        out[str(action["destination"])] = {"name": settings["name"],
                                           "enabled": settings["enabled"]}
    return out


# -- deliveries -----------------------------------------------------------------------------


def get_delivery(db: Session, delivery_id: int) -> tuple[ConversionDelivery, Call]:
    """A delivery and its call (whose publisher says who may see it)."""
    row = db.get(ConversionDelivery, delivery_id)
    if row is None:
        raise ConversionsError(f"unknown delivery {delivery_id}", status=404,
                               code="unknown_delivery")
    return row, db.get(Call, row.call_id)


def deliveries_query(*, status: str | None = None, destination_id: int | None = None,
                     call_id: int | None = None) -> Select:
    """Deliveries (joined to their calls, for scoping), newest first."""
    D = ConversionDelivery
    query = select(D).join(Call, Call.id == D.call_id)
    if status:
        if status not in STATUSES:
            raise ConversionsError("unknown status",
                                   {"status": f"one of {', '.join(STATUSES)}"})
        query = query.where(D.status == status)
    if destination_id is not None:
        query = query.where(D.destination_id == destination_id)
    if call_id is not None:
        query = query.where(D.call_id == call_id)
    return query.order_by(D.id.desc())


def attempts_of(db: Session, delivery_id: int) -> list[ConversionAttempt]:
    return list(db.scalars(select(ConversionAttempt).where(
        ConversionAttempt.delivery_id == delivery_id).order_by(ConversionAttempt.id)))


def retry_delivery(row: ConversionDelivery) -> ConversionDelivery:
    """Queue a failed delivery again."""
    if not outbox.retry(row):
        raise ConversionsError(
            f"only a failed delivery can be retried; this one is {row.status}", status=409)
    return row


# -- file exports ---------------------------------------------------------------------------


def check_export_range(start: dt.date, end: dt.date, most_days: int) -> None:
    if start > end:
        raise ConversionsError("start must not be after end", {"start": "after end"})
    if (end - start).days + 1 > most_days:
        raise ConversionsError(
            f"an export covers at most {most_days} days (DNI_REPORT_MAX_DAY_DIMENSIONS)",
            {"range": f"at most {most_days} days"})


def export_conversions(db: Session, site: Site, start: dt.date, end: dt.date, kind: str,
                       name: str | None = None) -> list[Conversion]:
    """The site's conversions of local days ``start``..``end`` for a file of ``kind``."""
    return outbox.conversions_between(db, site, start, end, kind, name)


# -- the JSON config file (DNI_CONVERSIONS_CONFIG) ------------------------------------------


def parse_file(data: object) -> dict:
    """Check a conversions config document; raise ValueError naming the bad part.

    ``{"sites": {"<site key>": {"destinations": {"<name>": {"kind", "config", "enabled"?}},
    "rule": {... rule fields ..., "actions": {"<destination name>": {"name", "enabled"?}}}}}}``
    """
    if not isinstance(data, dict) or set(data) != {"sites"} or not isinstance(data["sites"], dict):
        raise ValueError('the document must be {"sites": {"<site key>": {...}}}')
    for site_key, site in data["sites"].items():
        where = f"sites.{site_key}"
        if not isinstance(site, dict) or set(site) - {"destinations", "rule"}:
            raise ValueError(f"{where}: only 'destinations' and 'rule' are allowed")
        destinations = site.get("destinations") or {}
        if not isinstance(destinations, dict):
            raise ValueError(f"{where}.destinations must be an object of name -> destination")
        for name, dest in destinations.items():
            _check_file_destination(f"{where}.destinations.{name}", dest)
        if site.get("rule") is not None:
            _check_file_rule(f"{where}.rule", site["rule"], destinations)
    return data


def _check_file_destination(at: str, dest: object) -> None:
    if not isinstance(dest, dict) or set(dest) - {"kind", "config", "enabled"}:
        raise ValueError(f"{at}: only kind, config and enabled are allowed")
    if not isinstance(dest.get("enabled", True), bool):
        raise ValueError(f"{at}.enabled must be true or false")
    try:
        check_destination(dest.get("kind"), dest.get("config") or {})
    except ConversionsError as exc:
        raise ValueError(f"{at}.{problem(exc.fields)}") from None


def _check_file_rule(at: str, rule: object, destinations: dict) -> None:
    if not isinstance(rule, dict):
        raise ValueError(f"{at} must be an object")
    if unknown := set(rule) - RULE_KEYS:
        raise ValueError(f"{at}: unknown keys {sorted(unknown)}")
    try:
        check_rule({k: v for k, v in rule.items() if k != "actions"})
    except ConversionsError as exc:
        raise ValueError(f"{at}.{problem(exc.fields)}") from None
    actions = rule.get("actions") or {}
    if not isinstance(actions, dict):
        raise ValueError(f"{at}.actions must be an object of destination name -> action")
    for name, action in actions.items():
        if name not in destinations:
            raise ValueError(f"{at}.actions.{name}: no such destination in the file")
        if not isinstance(action, dict) or not isinstance(action.get("name"), str) \
                or not action["name"].strip() or ActionSettings().validate(action):
            raise ValueError(f"{at}.actions.{name}.name must be a non-empty string")


def problem(fields: dict | None) -> str:
    """The first problem of an error's ``fields`` as ``field.sub: message``."""
    name, why = next(iter((fields or {"_": "invalid"}).items()))
    while isinstance(why, dict):
        inner, why = next(iter(why.items()))
        name = f"{name}.{inner}"
    if isinstance(why, list):
        why = " ".join(map(str, why))
    return f"{name}: {why}"


def apply_file(db: Session, data: dict, box: CredentialBox | None = None) -> list[str]:
    """Create or update the file's destinations and site rules (marked ``managed_by=env``);
    returns the keys of the sites it names that do not exist (skipped).

    ``data`` comes from ``parse_file``. ``box`` encrypts the credentials; MissingKey when it
    has no key.
    """
    box = box or CredentialBox()
    skipped = []
    for site_key, site_data in data["sites"].items():
        site = db.scalar(select(Site).where(Site.key == site_key))
        if site is None:
            log.warning("DNI_CONVERSIONS_CONFIG names unknown site %r; skipped", site_key)
            skipped.append(site_key)
            continue
        ids = {name: _file_destination(db, box, site.id, name, dest).id
               for name, dest in (site_data.get("destinations") or {}).items()}
        if (rule_data := site_data.get("rule")) is not None:
            _file_rule(db, site.id, rule_data, ids)
    return skipped


def _file_destination(db: Session, box: CredentialBox, site_id: int, name: str,
                      dest: dict) -> ConversionDestination:
    row = db.scalar(select(ConversionDestination).where(
        ConversionDestination.site_id == site_id, ConversionDestination.name == name))
    if row is None:
        return create_destination(db, box, site_id=site_id, name=name, kind=dest["kind"],
                                  config=dest.get("config") or {},
                                  enabled=dest.get("enabled", True), managed_by="env")
    # The file is the truth for what it names: its config replaces the stored one whole.
    _configure(row, box, dest["kind"], dest.get("config") or {})
    row.enabled, row.managed_by = dest.get("enabled", True), "env"
    db.flush()
    return row


def _file_rule(db: Session, site_id: int, rule_data: dict, ids: dict[str, int]) -> None:
    settings = {k: v for k, v in rule_data.items() if k != "actions"}
    settings.setdefault("value", None)  # the file says it all: no value given, none kept
    actions = [{"destination": ids[name], "name": action["name"].strip(),
                "enabled": action.get("enabled", True)}
               for name, action in (rule_data.get("actions") or {}).items()]
    rule = db.scalar(select(ConversionRule).where(
        ConversionRule.site_id == site_id, ConversionRule.pool_id.is_(None),
        ConversionRule.managed_by == "env"))
    if rule is None:
        create_rule(db, site_id=site_id, settings=settings, actions=actions, managed_by="env")
    else:
        update_rule(db, rule, settings, actions)
