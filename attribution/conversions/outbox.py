"""The outbox: conversions are written in the transaction that (re)qualifies their call.

``on_qualification`` is called by ``attribution.calls`` (a new call, or ``requalify``) with
the caller's session, so a call's qualification and its outbox rows commit (or roll back)
together. It never talks to a platform: the worker (``delivery``) does, later.

A call that stops counting (a ``spam`` disposition, say) turns rows not yet sent into
``skipped`` and rows already sent into ``retraction_pending``; the worker then sends a
retraction, or marks ``retraction_unsupported`` where the platform has none.

Whether a pay-per-call buyer converted a call (for ``buyer_converted_only`` rules) is known
by the routing layer above: it registers where to read it (``read_buyer_conversions``) and
calls ``on_qualification`` itself, in the transaction that writes the routing log.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attribution.conversions import rules as conversion_rules
from attribution.conversions.base import Conversion
from attribution.conversions.models import (
    ConversionDelivery,
    ConversionDestination,
    ConversionRule,
)
from attribution.models import Call, StaticNumber, Visit
from pools.models import Pool, Site, utcnow

log = logging.getLogger(__name__)
NOT_WANTED = "the call no longer counts as a conversion"

# Whether a buyer converted a call: set by the layer that knows (``routing.money``); None
# in a process that never loaded it, where buyer rules' rows are then left as they are.
BuyerConverted = Callable[[Session, Call], bool]
_buyer_converted: BuyerConverted | None = None


def read_buyer_conversions(source: BuyerConverted | None) -> None:
    """Say where ``buyer_converted_only`` rules learn whether a buyer converted a call."""
    global _buyer_converted
    _buyer_converted = source


def delivery_key(call_id: int, destination_id: int) -> str:
    """The platform's dedupe key: the same for every retry, resend and retraction."""
    return f"dni-call-{call_id}-d{destination_id}"


def on_qualification(db: Session, call, *, first: bool = False,
                     buyer_converted: bool | None = None) -> None:
    """Bring the call's outbox rows in line with whether it counts now.

    ``first``: the call was inserted in this transaction, so it has no rows yet; one that
    is not over yet cannot count either, and then there is nothing to read or write.
    ``buyer_converted``: given by the routing layer when it settles a buyer's conversion;
    otherwise read from it, and only for a ``buyer_converted_only`` rule.
    """
    if call.site_id is None:
        return
    if first and not conversion_rules.settled(call):
        return
    if call.id is None:
        db.flush()
    site_rules = db.scalars(select(ConversionRule).where(ConversionRule.site_id == call.site_id)
                            .order_by(ConversionRule.id)).all()
    rule = conversion_rules.pick(site_rules, call.pool_id)
    if rule is not None and rule.buyer_converted_only and buyer_converted is None:
        if _buyer_converted is None:
            log.warning("call %s: buyer conversions unknown here, its rows left as they are",
                        call.id)
            return
        buyer_converted = _buyer_converted(db, call)
    existing = {} if first else {row.destination_id: row for row in db.scalars(
        select(ConversionDelivery).where(ConversionDelivery.call_id == call.id))}
    if rule is None:
        wanted = False
    else:
        wanted = conversion_rules.counts(rule, call, bool(buyer_converted))
    for row in existing.values():
        _update(row, wanted)
    if not wanted or rule is None:
        return
    owner = (db.get(StaticNumber, call.static_number_id) if call.static_number_id
             else db.get(Pool, call.pool_id) if call.pool_id else None)
    value = conversion_rules.value_of(rule, call, owner.revenue if owner else None)
    consent = conversion_rules.consent_of(rule, _ad_consent(db, call))
    destinations = {d.id: d for d in db.scalars(select(ConversionDestination).where(
        ConversionDestination.site_id == call.site_id, ConversionDestination.enabled))}
    for dest_ref, action in (rule.actions or {}).items():
        destination = destinations.get(int(dest_ref))
        if destination is None or not action.get("enabled", True):
            continue
        row = existing.get(destination.id)
        if row is None:
            _insert(db, call, rule, destination, action["name"], value, consent)
        elif row.status in ("pending", "retry"):
            row.name, row.value, row.currency, row.consent = (
                action["name"], value, rule.currency, consent)


def _ad_consent(db: Session, call) -> bool | None:
    consent = getattr(call, "ad_consent", None)
    if consent is None and call.session_id:
        visit = db.get(Visit, call.session_id)
        consent = getattr(visit, "ad_consent", None) if visit is not None else None
    return consent


def _update(row: ConversionDelivery, wanted: bool) -> None:
    """Move an existing row to where ``wanted`` says it should be."""
    row.wanted = wanted
    if row.status == "sending":
        return  # the worker settles it when the platform answers
    if wanted:
        if row.status == "skipped" and row.last_error == NOT_WANTED:
            _requeue(row, "conversion")
        elif row.status in ("retraction_pending", "retraction_unsupported") or (
                row.status in ("retry", "failed") and row.operation == "retraction"):
            row.status, row.operation = "sent", "conversion"  # nothing to take back any more
        return
    if row.operation == "conversion" and row.status in ("pending", "retry", "failed"):
        row.status, row.last_error = "skipped", NOT_WANTED
    elif row.status == "sent":
        _requeue(row, "retraction")


def _requeue(row: ConversionDelivery, operation: str) -> None:
    row.status = "retraction_pending" if operation == "retraction" else "pending"
    row.operation, row.attempts, row.last_error = operation, 0, None
    row.next_attempt_at = utcnow()


def _insert(db: Session, call, rule: ConversionRule, destination: ConversionDestination,
            name: str, value: Decimal | None, consent: bool) -> None:
    row = ConversionDelivery(
        call_id=call.id, destination_id=destination.id, rule_id=rule.id,
        key=delivery_key(call.id, destination.id), name=name, value=value,
        currency=rule.currency, consent=consent, status="pending", operation="conversion",
        wanted=True, attempts=0, next_attempt_at=utcnow())
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:
        # The same call qualified in a concurrent request, which wrote the row first.
        log.info("conversion for call %s to destination %s already queued", call.id,
                 destination.id)


def retry(row: ConversionDelivery) -> bool:
    """Queue a failed delivery again (from the API); returns False if it is not failed."""
    if row.status != "failed":
        return False
    _requeue(row, row.operation)
    return True


def conversion_for(db: Session, row: ConversionDelivery, call) -> Conversion:
    """The platform-neutral conversion a delivery row stands for, read from its call."""
    return build_conversion(
        db, call, key=row.key, name=row.name, value=row.value, currency=row.currency,
        consent=row.consent, kind="retraction" if row.operation == "retraction" else "conversion")


def build_conversion(db: Session, call, *, key: str, name: str, value: Decimal | None,
                     currency: str, consent: bool, kind: str = "conversion") -> Conversion:
    """A call as a conversion; without consent, nothing that identifies the visitor or caller."""
    site = db.get(Site, call.site_id) if call.site_id else None
    click_at = (dt.datetime.fromtimestamp(call.click_id_at_ms / 1000, dt.UTC)
                if call.click_id_at_ms else None)

    def maybe(value):
        return value if consent else None

    return Conversion(
        key=key, call_id=call.id, kind=kind, occurred_at=call.started_at, name=name,
        value=value, currency=currency, consent=consent,
        caller_e164=maybe(call.from_number if call.from_valid else None),
        gclid=maybe(call.gclid), gbraid=maybe(call.gbraid), wbraid=maybe(call.wbraid),
        msclkid=maybe(call.msclkid), fbclid=maybe(call.fbclid), click_at=maybe(click_at),
        fbp=maybe(getattr(call, "fbp", None)), ga_client_id=maybe(call.ga_client_id),
        ga_session_id=maybe(getattr(call, "ga_session_id", None)),
        timezone=site.timezone if site else "UTC")


def conversions_between(db: Session, site: Site, start: dt.date, end: dt.date, kind: str,
                        name: str | None = None) -> list[Conversion]:
    """The site's calls of local days ``start``..``end`` that count, as conversions for a
    destination ``kind`` (the file exports). ``name`` defaults to the rule's action name for
    the site's first destination of that kind."""
    site_rules = db.scalars(select(ConversionRule).where(ConversionRule.site_id == site.id)
                            .order_by(ConversionRule.id)).all()
    kind_ids = [str(i) for i in db.scalars(select(ConversionDestination.id).where(
        ConversionDestination.site_id == site.id, ConversionDestination.kind == kind)
        .order_by(ConversionDestination.id))]
    calls = db.scalars(select(Call).where(Call.site_id == site.id, Call.local_day >= start,
                                          Call.local_day <= end).order_by(Call.started_at))
    out = []
    for call in calls:
        rule = conversion_rules.pick(site_rules, call.pool_id)
        bought = (rule is not None and rule.buyer_converted_only
                  and _buyer_converted is not None and _buyer_converted(db, call))
        if rule is None or not conversion_rules.counts(rule, call, bought):
            continue
        action_name = name or next((rule.actions[i]["name"] for i in kind_ids
                                    if i in (rule.actions or {})), None)
        if not action_name:
            continue
        owner = (db.get(StaticNumber, call.static_number_id) if call.static_number_id
                 else db.get(Pool, call.pool_id) if call.pool_id else None)
        out.append(build_conversion(
            db, call, key=f"dni-call-{call.id}", name=action_name,
            value=conversion_rules.value_of(rule, call, owner.revenue if owner else None),
            currency=rule.currency,
            consent=conversion_rules.consent_of(rule, _ad_consent(db, call))))
    return out
