"""Request and response schemas; response schemas are whitelists of what each audience sees."""

from __future__ import annotations

import zoneinfo

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from attribution.qualification import validate_rules as validate_qualification
from attribution.visits import MAX_COOKIE_LENGTH
from dni_server.timefmt import iso_ms, iso_utc
from pools.phones import national_digits

TEXT = 4096
_short = validate.Length(min=1, max=255)


class Loose(Schema):
    """Requests ignore unknown fields: clients may be newer than the server."""

    class Meta:
        unknown = EXCLUDE


class Reply(Schema):
    """A response schema: the document says no other field is sent (additionalProperties
    false), which schemathesis checks against every answer."""

    class Meta:
        unknown = RAISE


def optional_text(max_length: int) -> fields.String:
    """A string a request may leave out or send as null."""
    return fields.String(load_default=None, allow_none=True,
                         validate=validate.Length(max=max_length))


# Amounts are decimal strings ("35.00") on the way out; the document says so, not "number".
MONEY = {"type": "string", "pattern": r"^\d{1,8}(\.\d{1,2})?$", "example": "35.00"}


AUTOSCALE = {"description": (
    "Autoscale policy: enabled, mode (propose|apply), min, max, accuracy_target, step, "
    "cooldown_minutes, trim_day, daily_limit, account, area_code; a change merges into the "
    "stored policy, null removes it (not shown to publisher tokens)")}


def iana_zone(value: str) -> None:
    """A time zone by its IANA name (Europe/London), as sites and buyers give theirs."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {value!r} (use an IANA name)") from None


def _money(value) -> None:
    if not 0 <= value <= 10_000_000:
        raise ValidationError("must be an amount from 0 to 10,000,000")


def _qualification(value) -> None:
    try:
        validate_qualification(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


# -- snippet API -------------------------------------------------------------------------


class AdIdsSchema(Loose):
    """Ad ids as the snippet reads them from cookies (raw values: the service keeps what has
    the platform's shape and ignores the rest), and the visitor's ad consent."""

    ga_client_id = optional_text(MAX_COOKIE_LENGTH)  # _ga, or its client id "123.456"
    ga_session_id = optional_text(MAX_COOKIE_LENGTH)  # _ga_<measurement id>, or its session id
    fbp = optional_text(MAX_COOKIE_LENGTH)  # _fbp
    # true / false: the visitor's answer; null: the site does not ask. No "yes" or "on".
    consent = fields.Boolean(load_default=None, allow_none=True, truthy={True}, falsy={False})


class SessionRequestSchema(AdIdsSchema):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64))
    url = optional_text(TEXT)
    referrer = optional_text(TEXT)
    visitor_id = optional_text(128)
    session_id = optional_text(128)


class QuickLoader:
    """A schema's load, short-cut for bodies whose every field is plainly valid.

    The heartbeat runs on every page view, and marshmallow's machinery costs more than the
    rest of our code there. Bodies of strings (and booleans) within their length limits are
    taken as they are; anything else goes to the schema itself, which decides and words the
    error, so the schema stays the one definition of what is valid.
    """

    KINDS = {fields.String: str, fields.Boolean: bool}

    def __init__(self, schema: Schema):
        self.schema = schema
        self.rules = []
        for name, field in schema.fields.items():
            kind = self.KINDS.get(type(field))
            if kind is None:
                raise TypeError(f"QuickLoader cannot check {name} ({type(field).__name__})")
            lengths = [v for v in field.validators if isinstance(v, validate.Length)]
            if len(lengths) != len(field.validators):
                raise TypeError(f"QuickLoader cannot check the validators of {name}")
            low = max([v.min or 0 for v in lengths], default=0)
            high = min([v.max for v in lengths if v.max is not None], default=None)
            self.rules.append((name, kind, field.required, low, high))

    def load(self, body: dict) -> dict:
        out = {}
        for name, kind, required, low, high in self.rules:
            value = body.get(name)
            if value is None:
                if required or (name in body and not self.schema.fields[name].allow_none):
                    return self.schema.load(body)
            elif type(value) is not kind or (kind is str and not (
                    low <= len(value) and (high is None or len(value) <= high))):
                return self.schema.load(body)
            out[name] = value
        return out


class HeartbeatRequestSchema(AdIdsSchema):
    site = fields.String(required=True, validate=validate.Length(min=1, max=64))
    url = optional_text(TEXT)
    visitor_id = optional_text(128)


def number_entry(entry, now_ms: int, session_id: str | None = None) -> dict:
    """One swap instruction; hand-built because it is on the heartbeat path.

    ``expires_in`` (seconds) lets the snippet judge expiry without trusting the visitor's
    clock, which may be minutes off. ``session_id`` repeats the answer's own: ``dni('onNumber')``
    callbacks (the touch add-on, dni-touch.js) see entries only.
    """
    out = {
        "session_id": session_id,
        "target": entry.target,
        "number": entry.number,
        "expires_at": iso_ms(entry.expires_at_ms) if entry.expires_at_ms else None,
        "expires_in": max(0, (entry.expires_at_ms - now_ms) // 1000)
        if entry.expires_at_ms else None,
        "fallback": entry.fallback,
        "target_national": national_digits(entry.target),
        "number_national": national_digits(entry.number),
    }
    if entry.reason:
        out["reason"] = entry.reason
    return out


def session_answer(answer, now_ms: int) -> dict:
    return {
        "session_id": answer.session_id,
        "visitor_id": answer.visitor_id or None,
        "numbers": [number_entry(e, now_ms, answer.session_id) for e in answer.numbers],
        "renew_in": answer.renew_in,
    }


# -- admin API ---------------------------------------------------------------------------


class KeywordList(fields.Raw):
    """A site's insight keywords, checked and stored in their normal form."""

    MAX = 200

    def _deserialize(self, value, attr, data, **kwargs):
        from dataclasses import asdict

        from attribution.insight.keywords import KeywordError, parse_keywords

        if not isinstance(value, list) or len(value) > self.MAX \
                or not all(isinstance(entry, dict) for entry in value):
            raise ValidationError(f"must be a list of at most {self.MAX} keyword objects")
        try:
            return [asdict(keyword) for keyword in parse_keywords(value)]
        except KeywordError as exc:
            raise ValidationError(str(exc)) from None


class SiteSchema(Loose):
    id = fields.Integer(dump_only=True)
    key = fields.String(dump_only=True)
    name = fields.String(required=True, validate=_short)
    domains = fields.List(fields.String(validate=_short), load_default=list,
                          validate=validate.Length(max=100))
    keyword_params = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                                 load_default=list, validate=validate.Length(max=20))
    timezone = fields.String(load_default="UTC", validate=iana_zone)
    # Call insight: [{"word", "side", "sensitivity", "means"}] listened for in recordings.
    insight_keywords = KeywordList(allow_none=True)
    recording_retention_days = fields.Integer(strict=True, allow_none=True,
                                              validate=validate.Range(1, 3650))
    created_at = fields.Function(lambda site: iso_utc(site.created_at), dump_only=True)


class MoneyRules(Loose):
    """Fields shared by pools and static numbers: recording, qualification, money."""

    record_calls = fields.Boolean()
    qualification = fields.Raw(validate=_qualification)
    revenue = fields.Decimal(places=2, validate=_money, as_string=True, metadata=MONEY)
    payout = fields.Decimal(places=2, validate=_money, as_string=True, metadata=MONEY)
    publisher = fields.String(allow_none=True, validate=validate.Length(max=200))
    # Pay-per-call: the plan offering the calls to buyers (replaces destination); null: none.
    routing_plan = fields.Integer(strict=True, allow_none=True, attribute="routing_plan_id",
                                  validate=validate.Range(1, 2**31 - 1))


class PoolSettingsSchema(MoneyRules):
    """Fields a pool can be created or updated with."""

    name = fields.String(validate=_short)
    destination = fields.String(validate=validate.Length(min=1, max=40))
    fallback = fields.String(validate=validate.Length(min=1, max=40))
    lease_seconds = fields.Integer(strict=True, validate=validate.Range(30, 86_400))
    max_lease_seconds = fields.Integer(strict=True, validate=validate.Range(60, 7 * 86_400))
    cooldown_seconds = fields.Integer(strict=True, validate=validate.Range(0, 86_400))
    attribution_window_seconds = fields.Integer(strict=True, validate=validate.Range(0, 30 * 86_400))
    exhaustion_policy = fields.String(validate=validate.OneOf(["fallback", "reuse_cooling"]))
    priority = fields.Integer(strict=True, validate=validate.Range(-1000, 1000))
    rules = fields.Raw()
    autoscale = fields.Dict(allow_none=True, metadata=AUTOSCALE)  # dni_server/api/autoscale.py


class PoolCreateSchema(PoolSettingsSchema):
    site = fields.Raw(required=True)
    name = fields.String(required=True, validate=_short)
    target = fields.String(required=True, validate=validate.Length(min=1, max=40))
    destination = fields.String(required=True, validate=validate.Length(min=1, max=40))
    numbers = fields.List(fields.Raw(), load_default=list, validate=validate.Length(max=10_000))
    region = fields.String(load_default="US", validate=validate.Length(equal=2))


class NumbersSchema(Loose):
    numbers = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1, max=10_000))
    region = fields.String(load_default="US", validate=validate.Length(equal=2))


class PoolSchema(Reply):
    id = fields.Integer()
    site_id = fields.Integer()
    name = fields.String()
    target = fields.String()
    destination = fields.String()
    fallback = fields.String()
    lease_seconds = fields.Integer()
    max_lease_seconds = fields.Integer()
    cooldown_seconds = fields.Integer()
    attribution_window_seconds = fields.Integer()
    exhaustion_policy = fields.String()
    priority = fields.Integer()
    rules = fields.Raw()
    record_calls = fields.Boolean()
    qualification = fields.Raw()
    revenue = fields.Decimal(as_string=True, metadata=MONEY)
    payout = fields.Decimal(as_string=True, metadata=MONEY)
    publisher = fields.String(allow_none=True)
    routing_plan = fields.Integer(attribute="routing_plan_id", allow_none=True)
    active = fields.Boolean()
    created_at = fields.Function(lambda pool: iso_utc(pool.created_at))


class PoolNumberSchema(Reply):
    number = fields.String()
    status = fields.String()
    added_at = fields.Function(lambda row: iso_utc(row.added_at))
    retired_at = fields.Function(lambda row: iso_utc(row.retired_at))


class VisitSchema(Reply):
    session_id = fields.String()
    site_id = fields.Integer()
    visitor_id = fields.String()
    created_at = fields.Function(lambda v: iso_utc(v.created_at))
    landing_url = fields.String(allow_none=True)
    landing_path = fields.String(allow_none=True)
    referrer = fields.String(allow_none=True)
    referrer_domain = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    medium = fields.String(allow_none=True)
    keyword = fields.String(allow_none=True)
    utm_source = fields.String(allow_none=True)
    utm_medium = fields.String(allow_none=True)
    utm_campaign = fields.String(allow_none=True)
    utm_term = fields.String(allow_none=True)
    utm_content = fields.String(allow_none=True)
    utm_id = fields.String(allow_none=True)
    utm_source_platform = fields.String(allow_none=True)
    utm_creative_format = fields.String(allow_none=True)
    utm_marketing_tactic = fields.String(allow_none=True)
    gclid = fields.String(allow_none=True)
    gbraid = fields.String(allow_none=True)
    wbraid = fields.String(allow_none=True)
    msclkid = fields.String(allow_none=True)
    fbclid = fields.String(allow_none=True)
    ttclid = fields.String(allow_none=True)
    li_fat_id = fields.String(allow_none=True)
    dclid = fields.String(allow_none=True)
    ga_client_id = fields.String(allow_none=True)
    ga_session_id = fields.String(allow_none=True)
    fbp = fields.String(allow_none=True)
    ad_consent = fields.Boolean(allow_none=True)
    device_type = fields.String(allow_none=True)
    browser = fields.String(allow_none=True)
    browser_version = fields.String(allow_none=True)
    os = fields.String(allow_none=True)
    os_version = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    fallback_reason = fields.String(allow_none=True)


# -- calls and static numbers ------------------------------------------------------------


class CallRequestSchema(Loose):
    call_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    from_ = fields.String(required=True, data_key="from", validate=validate.Length(min=1, max=64))
    to = fields.String(required=True, validate=validate.Length(min=1, max=64))
    started_at = fields.AwareDateTime(required=True, format="iso")
    duration = fields.Integer(strict=True, load_default=None, allow_none=True,
                              validate=validate.Range(0, 7 * 86_400))
    status = fields.String(load_default="completed", validate=validate.OneOf(
        ["ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"]))
    recording_url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"})
    caller_country = optional_text(2)
    caller_region = optional_text(64)
    caller_city = optional_text(128)


class DispositionSchema(Loose):
    disposition = fields.String(required=True, validate=validate.OneOf(sorted(
        ["sale", "qualified_lead", "appointment", "lead", "voicemail", "other", "spam",
         "not_a_lead", "wrong_number", "duplicate"])))
    value = fields.Decimal(load_default=None, allow_none=True, places=2, validate=_money,
                           as_string=True)


class StaticNumberSchema(MoneyRules):
    id = fields.Integer(dump_only=True)
    site = fields.Raw(load_only=True, load_default=None, allow_none=True)
    site_id = fields.Integer(dump_only=True, allow_none=True)
    number = fields.String(required=True, validate=validate.Length(min=1, max=40))
    destination = fields.String(required=True, validate=validate.Length(min=1, max=40))
    source = fields.String(required=True, validate=_short)
    medium = fields.String(required=True, validate=_short)
    campaign = fields.String(allow_none=True, validate=validate.Length(max=255))
    label = fields.String(allow_none=True, validate=validate.Length(max=255))
    timezone = fields.String(load_default="UTC")
    region = fields.String(load_only=True, load_default="US", validate=validate.Length(equal=2))
    status = fields.String(dump_only=True)
    created_at = fields.Function(lambda row: iso_utc(row.created_at), dump_only=True)
    retired_at = fields.Function(lambda row: iso_utc(row.retired_at), dump_only=True)


class TokenSchema(Loose):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=_short)
    scope = fields.String(required=True, validate=validate.OneOf(["admin", "read_only",
                                                                  "publisher"]))
    publisher = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(min=1, max=200))
    created_at = fields.Function(lambda row: iso_utc(row.created_at), dump_only=True)
    revoked_at = fields.Function(lambda row: iso_utc(row.revoked_at), dump_only=True)


# -- responses -----------------------------------------------------------------------------
# Each answer is dumped with one of these, and /openapi.json documents the same class, so a
# field leaves the server only when a schema names it (a new model column stays private).


class With:
    """A model row seen with extra values a view computed beside it, for dumping."""

    def __init__(self, row, **extra):
        self._row = row
        self.__dict__.update(extra)

    def __getattr__(self, name):
        return getattr(self._row, name)


def _text() -> fields.String:
    return fields.String(allow_none=True)


def _same_as(name: str) -> fields.Function:
    """A second name for a text column (marshmallow lets one field own each attribute)."""
    return fields.Function(lambda row: getattr(row, name),
                           metadata={"type": "string", "nullable": True})


def _utc(name: str) -> fields.Function:
    """A stored datetime as ISO 8601 UTC to the millisecond (null when unset)."""
    return fields.Function(lambda row: iso_utc(getattr(row, name)),
                           metadata={"type": "string", "nullable": True})


def _ms(name: str) -> fields.Function:
    """A stored epoch-milliseconds time as ISO 8601 UTC (null when unset)."""
    return fields.Function(lambda row: iso_ms(getattr(row, name)),
                           metadata={"type": "string", "nullable": True})


class ErrorBodySchema(Reply):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields")


class ErrorSchema(Reply):
    """The one error shape (dni_server/errors.py)."""

    error = fields.Nested(ErrorBodySchema, required=True)


class NumberEntrySchema(Reply):
    """One swap instruction (hand-built by ``number_entry``; a test holds its keys to these)."""

    session_id = fields.String(required=True, metadata={
        "description": "the answer's session_id, repeated for dni('onNumber') callbacks"})
    target = fields.String(required=True, metadata={"description": "the page's number, E.164"})
    number = fields.String(required=True, metadata={"description": "the number to show, E.164"})
    expires_at = fields.String(allow_none=True, required=True)
    expires_in = fields.Integer(allow_none=True, required=True, metadata={
        "description": "seconds until expires_at, by the server's clock"})
    fallback = fields.Boolean(required=True)
    reason = fields.String(metadata={"enum": ["pool_exhausted", "bot", "unavailable", "no_pool",
                                              "rate_limited", "expired"]})
    target_national = fields.String(required=True)
    number_national = fields.String(required=True)


class SessionAnswerSchema(Reply):
    """The snippet's answer (hand-built by ``session_answer``, for speed)."""

    session_id = fields.String(required=True)
    visitor_id = fields.String(allow_none=True, required=True)
    numbers = fields.List(fields.Nested(NumberEntrySchema), required=True)
    renew_in = fields.Integer(required=True)


class PoolDetailSchema(PoolSchema):
    """A pool with its number counts and live Redis state (null when Redis is away)."""

    numbers = fields.Dict(keys=fields.String(), values=fields.Integer())
    live = fields.Dict(allow_none=True)
    autoscale = fields.Dict(allow_none=True, metadata=AUTOSCALE)


class RejectedNumberSchema(Reply):
    number = fields.String(attribute="raw")
    reason = fields.String()


class NumberReportSchema(Reply):
    accepted = fields.List(fields.String())
    rejected = fields.List(fields.Nested(RejectedNumberSchema))


class PageViewSchema(Reply):
    url = _text()
    path = _text()
    viewed_at = _ms("viewed_at_ms")


class PageViewsSchema(Reply):
    """What one page of a session's journey covers (attribution.sessions.Journey)."""

    stored = fields.Integer()
    seen = fields.Integer()
    offset = fields.Integer()
    limit = fields.Integer()
    next_offset = fields.Integer(allow_none=True)


class LeaseSchema(Reply):
    pool_id = fields.Integer()
    number = fields.String()
    started_at = _ms("started_at_ms")
    last_renewed_at = _ms("last_renewed_at_ms")
    expires_at = _ms("expires_at_ms")
    ended_at = _ms("ended_at_ms")
    end_reason = _text()


class VisitDetailSchema(VisitSchema):
    """A session with a page of its journey (``page_views_offset``/``page_views_limit``)."""

    pages = fields.List(fields.Nested(PageViewSchema))
    page_views = fields.Nested(PageViewsSchema)
    leases = fields.List(fields.Nested(LeaseSchema))


class Whole(fields.Nested):
    """A nested object made of the row's own columns (a call's attribution, its caller)."""

    def get_value(self, obj, attr, accessor=None, default=None):
        return obj


class CallAttributionSchema(Reply):
    """Where a call came from: the visit's columns the API shows, and how it was matched."""

    landing_url = _text()
    landing_path = _text()
    referrer = _text()
    referrer_domain = _text()
    source = _text()
    medium = _text()
    utm_source = _text()
    utm_medium = _text()
    utm_campaign = _text()
    utm_term = _text()
    utm_content = _text()
    utm_id = _text()
    utm_source_platform = _text()
    utm_creative_format = _text()
    utm_marketing_tactic = _text()
    gclid = _text()
    gbraid = _text()
    wbraid = _text()
    msclkid = _text()
    fbclid = _text()
    ttclid = _text()
    li_fat_id = _text()
    dclid = _text()
    click_id_at_ms = fields.Integer(allow_none=True)
    ga_client_id = _text()
    ga_session_id = _text()
    fbp = _text()
    ad_consent = fields.Boolean(allow_none=True)
    keyword = _text()
    device_type = _text()
    browser = _text()
    browser_version = _text()
    os = _text()
    os_version = _text()
    country = _text()
    region = _text()
    city = _text()
    method = fields.String()
    confidence = fields.Float()
    session_id = _text()
    pool_id = fields.Integer(allow_none=True)
    static_number_id = fields.Integer(allow_none=True)
    campaign = _text()
    term = _same_as("utm_term")
    content = _same_as("utm_content")
    label = _text()
    publisher = _text()
    landing_page = _same_as("landing_url")


class CallerSchema(Reply):
    number = fields.String(attribute="from_number")
    valid = fields.Boolean(attribute="from_valid")
    country = fields.String(attribute="caller_country", allow_none=True)
    region = fields.String(attribute="caller_region", allow_none=True)
    city = fields.String(attribute="caller_city", allow_none=True)
    repeat = fields.Boolean(attribute="repeat_caller")
    first_touch = fields.Dict(allow_none=True, metadata={
        "description": "the first call's visit, when this tenant may see it"})


class CallSchema(Reply):
    """A call in the log. Dump ``With(call, first_touch=...)``: the first touch comes from
    ``shown_first_touches`` (never another tenant's visit)."""

    id = fields.Integer()
    call_id = fields.String(attribute="provider_call_id")
    provider = fields.String()
    from_ = fields.String(attribute="from_number", data_key="from")
    to = fields.String(attribute="to_number")
    destination = _text()
    started_at = _utc("started_at")
    answered_at = _utc("answered_at")
    ended_at = _utc("ended_at")
    status = fields.String()
    dial_status = _text()
    duration = fields.Integer(allow_none=True)
    recording_url = _text()
    attribution = Whole(CallAttributionSchema)
    caller = Whole(CallerSchema)
    qualified = fields.Boolean(allow_none=True)
    qualification_failures = fields.List(fields.String(), allow_none=True)
    disposition = _text()
    disposition_value = fields.Decimal(as_string=True, allow_none=True, metadata=MONEY)
    revenue = fields.Decimal(as_string=True, metadata=MONEY)
    payout = fields.Decimal(as_string=True, metadata=MONEY)


class RecordingStateSchema(Reply):
    """Where a call's recording stands (attribution.insight.jobs)."""

    status = fields.String(allow_none=True, metadata={
        "description": "pending, fetching, fetched, failed or deleted; null: none announced"})
    stored = fields.Boolean(metadata={"description": "GET /v1/calls/<id>/recording serves it"})
    attempts = fields.Integer()
    next_try_at = _utc("next_try_at")
    error = _text()


class CallDetailSchema(CallSchema):
    """A call with the explanation of its match."""

    explanation = fields.Dict(allow_none=True)
    recording = fields.Nested(RecordingStateSchema)
    # What the recording says (attribution.insight.analyse); null until analysed.
    insight = fields.Dict(allow_none=True)
    # Pay-per-call: {plan, ivr, offers, skipped, buyer, target, converted, revenue, outcome}
    # (routing.calls.routing_of); null when the call was not routed.
    routing = fields.Dict(allow_none=True)


class HourSchema(Reply):
    hour = fields.String()
    peak_leases = fields.Integer()
    share = fields.Float(allow_none=True)


class AccuracyPointSchema(Reply):
    numbers = fields.Integer()
    expected_accuracy = fields.Float(metadata={
        "description": "share of calls the model expects credited to the visit that made them"})
    exhausted_share = fields.Float(metadata={
        "description": "share of calls the model expects lost to exhaustion (fallback shown)"})


class AccuracyRangeSchema(Reply):
    low = fields.Integer(metadata={
        "description": "fewest numbers expected within error below accuracy_target"})
    high = fields.Integer(allow_none=True, metadata={
        "description": "fewest numbers expected within error above it (null: no size is)"})
    error = fields.Float(metadata={
        "description": "one standard error of accuracy on the calls the model learned from"})


class PoolAccuracySchema(Reply):
    """attribution.accuracy: expected attribution accuracy against pool size, learned from
    the pool's own traffic in the window (null figures when it had no calls)."""

    accuracy_target = fields.Float()
    expected_at_current_size = fields.Float(allow_none=True)
    recommended_numbers = fields.Integer(allow_none=True, metadata={
        "description": "fewest numbers whose expected accuracy reaches accuracy_target"})
    curve = fields.List(fields.Nested(AccuracyPointSchema))
    calls = fields.Integer(metadata={"description": "calls credited to the window's visits"})
    visits = fields.Integer()
    recommended_cooldown_seconds = fields.Integer(allow_none=True)
    attribution_window_seconds = fields.Integer(metadata={
        "description": "the attribution window the curve and recommended_numbers assume: the "
                       "pool's own, or the recommended one when calls came after it"})
    recommended_attribution_window_seconds = fields.Integer(allow_none=True, metadata={
        "description": "a longer attribution window, when calls to numbers nobody had "
                       "leased since came after the pool's; null: the pool's loses none"})
    rest_seconds = fields.Integer(allow_none=True, metadata={
        "description": "how long 90% of the pool's numbers rested at least, between a visit "
                       "and their next lease: callers who ring later may reach the next "
                       "holder, where the pool cannot see them as late (null: not known, "
                       "or never reused)"})
    numbers_to_see_late_calls = fields.Integer(allow_none=True, metadata={
        "description": "when the numbers rest less than twice attribution_window_seconds "
                       "(calls past the window are seen only on numbers resting longer): a "
                       "pool size whose numbers would rest that long; run it for a while and ask "
                       "again, since this answer cannot count the callers it hides (null: "
                       "the pool sees them)"})
    recommended_range = fields.Nested(AccuracyRangeSchema, allow_none=True, metadata={
        "description": "the sizes the window's calls cannot tell from recommended_numbers: "
                       "those whose expected accuracy is within one standard error of "
                       "accuracy_target; a longer window narrows it (null: no answer)"})
    reasoning = fields.String()
    model = fields.String()


class PoolHealthSchema(Reply):
    """attribution.pool_health.health's answer."""

    pool_id = fields.Integer()
    start = fields.String()
    end = fields.String()
    numbers = fields.Integer()
    peak_concurrent_leases = fields.Integer()
    timezone = fields.String()
    utilisation = fields.List(fields.Nested(HourSchema))
    leases = fields.Integer()
    exhaustion_events = fields.Integer()
    fallback_sessions = fields.Integer()
    exhaustion_rate = fields.Float(allow_none=True)
    recommendation = fields.Dict()
    accuracy = fields.Nested(PoolAccuracySchema)


class TokenCreatedSchema(TokenSchema, Reply):
    """A new token, with its secret: shown this once."""

    class Meta:
        unknown = RAISE

    token = fields.String(dump_only=True)


class ReportRowSchema(Reply):
    dimensions = fields.Dict()
    metrics = fields.Dict()


class ReportPageSchema(Reply):
    offset = fields.Integer()
    limit = fields.Integer()
    next_offset = fields.Integer(allow_none=True)
    next = fields.String(allow_none=True, metadata={"description": "the next page's URL"})


class ReportSchema(Reply):
    """attribution.reports.run's answer, with the next page's URL."""

    rows = fields.List(fields.Nested(ReportRowSchema))
    totals = fields.Dict()
    query = fields.Dict()
    page = fields.Nested(ReportPageSchema)


class ConversionDestinationSchema(Reply):
    """A destination; dump ``With(row, config=masked)``: credentials never leave unmasked."""

    id = fields.Integer()
    site_id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    config = fields.Dict(metadata={"description": "credentials masked"})
    enabled = fields.Boolean()
    managed_by = fields.String(metadata={"enum": ["api", "env"]})
    created_at = _utc("created_at")
    updated_at = _utc("updated_at")


class ConversionRuleSchema(Reply):
    """A rule; dump ``With(row, actions=[...])`` (one entry per destination)."""

    id = fields.Integer()
    site_id = fields.Integer()
    pool = fields.Integer(attribute="pool_id", allow_none=True)
    qualified_only = fields.Boolean()
    buyer_converted_only = fields.Boolean()
    min_duration = fields.Integer(allow_none=True)
    dispositions_included = fields.Function(lambda row: row.dispositions_included or [],
                                            metadata={"type": "array",
                                                      "items": {"type": "string"}})
    dispositions_excluded = fields.Function(lambda row: row.dispositions_excluded or [],
                                            metadata={"type": "array",
                                                      "items": {"type": "string"}})
    value_source = fields.String()
    value = fields.Decimal(as_string=True, allow_none=True, metadata=MONEY)
    currency = fields.String()
    unknown_consent = fields.String()
    actions = fields.List(fields.Dict())
    enabled = fields.Boolean()
    managed_by = fields.String(metadata={"enum": ["api", "env"]})
    created_at = _utc("created_at")


class ConversionDeliverySchema(Reply):
    """One call's conversion for one destination (the outbox row)."""

    id = fields.Integer()
    call = fields.Integer(attribute="call_id")
    destination = fields.Integer(attribute="destination_id")
    key = fields.String()
    name = fields.String()
    value = fields.Decimal(as_string=True, allow_none=True, metadata=MONEY)
    currency = fields.String()
    consent = fields.Boolean()
    status = fields.String()
    operation = fields.String()
    wanted = fields.Boolean()
    attempts = fields.Integer()
    next_attempt_at = _utc("next_attempt_at")
    last_error = _text()
    sent_at = _utc("sent_at")
    retracted_at = _utc("retracted_at")
    created_at = _utc("created_at")
    updated_at = _utc("updated_at")


class ConversionAttemptSchema(Reply):
    """One exchange with a platform; dump ``With(row, request=..., response=...)`` with the
    parts the caller may see (bodies for admins only)."""

    id = fields.Integer()
    operation = fields.String()
    outcome = fields.String()
    detail = _text()
    request = fields.Dict()
    response = fields.Dict()
    http_status = fields.Integer(allow_none=True)
    elapsed_ms = fields.Integer(allow_none=True)
    at = _utc("at")


def list_of(key: str, item: type[Schema]) -> type[Schema]:
    """The envelope of a list answer, e.g. {"sites": [...]}."""
    name = item.__name__.removesuffix("Schema") + "ListSchema"
    return type(name, (Reply,), {key: fields.List(fields.Nested(item)),
                                 "__doc__": f"{{{key!r}: [...]}}"})


SiteListSchema = list_of("sites", SiteSchema)
PoolListSchema = list_of("pools", PoolSchema)
PoolNumberListSchema = list_of("numbers", PoolNumberSchema)
VisitListSchema = list_of("sessions", VisitSchema)
CallListSchema = list_of("calls", CallSchema)
StaticNumberListSchema = list_of("static_numbers", StaticNumberSchema)
TokenListSchema = list_of("tokens", TokenSchema)
ConversionDestinationListSchema = list_of("destinations", ConversionDestinationSchema)
ConversionRuleListSchema = list_of("rules", ConversionRuleSchema)
ConversionDeliveryListSchema = list_of("deliveries", ConversionDeliverySchema)
ConversionAttemptListSchema = list_of("attempts", ConversionAttemptSchema)
