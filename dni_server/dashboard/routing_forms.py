"""Dashboard forms to create and change buyers and routing plans (issue 15: "buyers and
plans created through the API, CLI or dashboard").

A form is turned into the API's JSON body (``buyer_body``, ``plan_body``: plain functions
of the posted fields), checked by the API's own schemas, and saved by the same service
(``routing.admin`` through ``routing_admin.changed``, which commits and reloads the routing
directory). Refusals come back on the form, each under the field it is about. Only tokens
that may write (admin) see or post these forms; CSRF is checked for every POST by
``dashboard.auth``.

Registered on ``dashboard.bp`` by ``dashboard.routing``.
"""

from __future__ import annotations

import json
import re

from flask import abort, g, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from dni_server.api.auth import scoped, visible
from dni_server.api.routing_admin import buyer_in, changed, plan_in
from dni_server.dashboard import bp
from dni_server.errors import Invalid
from dni_server.extensions import db
from routing import admin
from routing.models import Buyer, RoutingPlan

SIMPLE_CAPS = (("calls", "day"), ("conversions", "day"))  # the caps with inputs of their own
STEP_FIELDS = ("type", "text", "retries", "digit", "on_failure", "tag", "options")
# Buyer fields with inputs of their own; the rest go in the form's "more" JSON.
BUYER_INPUTS = {"name", "publisher", "timezone", "paused", "targets", "conversion", "revenue",
                "whisper", "accept", "caps"}
TARGET_OPTIONS = {"weight": "weight", "concurrency": "concurrency", "ring": "ring_seconds"}


def _writer() -> None:
    """Read-only and publisher tokens cannot change buyers or plans (as in the API)."""
    if not g.principal.can_write:
        abort(403, "This token cannot change buyers or routing plans.")


def _text(form, name: str) -> str:
    return (form.get(name) or "").strip()


def _number(form, name: str, errors: dict, field: str | None = None):
    """A whole number from the form, None when empty; a refusal under ``field``."""
    value = _text(form, name)
    if not value:
        return None
    if not re.fullmatch(r"\d{1,9}", value):
        errors[field or name] = "must be a whole number"
        return None
    return int(value)


# -- buyers ---------------------------------------------------------------------------------


def parse_targets(text: str, errors: dict) -> list[dict]:
    """One target a line: a number or sip: URI, then optional ``weight=``, ``concurrency=``
    and ``ring=`` (seconds)."""
    targets = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        target = {"sip" if words[0].lower().startswith("sip:") else "number": words[0]}
        for word in words[1:]:
            key, _, value = word.partition("=")
            if key not in TARGET_OPTIONS or not value.isdigit():
                errors["targets"] = (f"line {n}: {word!r} is not weight=N, concurrency=N "
                                     "or ring=N")
                return targets
            target[TARGET_OPTIONS[key]] = int(value)
        targets.append(target)
    return targets


def targets_text(targets: list[dict]) -> str:
    names = {v: k for k, v in TARGET_OPTIONS.items()}
    return "\n".join(" ".join([t.get("number") or t.get("sip") or ""] + [
        f"{names[k]}={t[k]}" for k in ("weight", "concurrency", "ring_seconds") if k in t])
        for t in targets)


def buyer_body(form, errors: dict) -> dict:
    """The API's buyer body from the form's fields (errors: the form's own refusals)."""
    try:
        more = json.loads(_text(form, "more") or "{}")
    except ValueError as exc:
        more = {}
        errors["more"] = f"not JSON: {exc}"
    if not isinstance(more, dict):
        more, errors["more"] = {}, "must be a JSON object"
    if unknown := set(more) & BUYER_INPUTS - {"caps"}:
        errors["more"] = f"{', '.join(sorted(unknown))}: set with the inputs above"
    body = {k: v for k, v in more.items() if k not in BUYER_INPUTS - {"caps"}}
    caps = dict(body.pop("caps", None) or {})
    for metric, period in SIMPLE_CAPS:
        value = _number(form, f"cap_{period}_{metric}", errors)
        counts = {k: v for k, v in (caps.get(metric) or {}).items() if k != period}
        if value is not None:
            counts[period] = value
        caps.pop(metric, None)
        if counts:
            caps[metric] = counts
    concurrency = _number(form, "cap_concurrency", errors)
    caps.pop("concurrency", None)
    if concurrency is not None:
        caps["concurrency"] = concurrency
    body |= {"name": _text(form, "name"), "timezone": _text(form, "timezone"),
             "revenue": _text(form, "revenue"), "paused": form.get("paused") == "on",
             "accept": form.get("accept") == "on",
             "targets": parse_targets(form.get("targets") or "", errors),
             "conversion": {"from": _text(form, "conversion_from") or "answer"}, "caps": caps}
    minimum = _number(form, "min_duration", errors, "conversion")
    if minimum is not None:
        body["conversion"]["min_duration"] = minimum
    if whisper := _text(form, "whisper"):
        body["whisper"] = whisper
    if publisher := _text(form, "publisher"):
        body["publisher"] = publisher
    return body


def buyer_form(row: Buyer | None) -> dict:
    """The form's fields for a buyer (empty for a new one)."""
    if row is None:
        return {"timezone": "America/New_York", "conversion_from": "answer",
                "min_duration": "60", "more": ""}
    spec = admin.editable(row)
    caps = dict(spec.get("caps") or {})
    out = {"name": row.name, "publisher": row.publisher or "", "paused": row.paused,
           "timezone": spec.get("timezone", ""), "revenue": spec.get("revenue", ""),
           "targets": targets_text(spec.get("targets") or []),
           "conversion_from": (spec.get("conversion") or {}).get("from", "answer"),
           "min_duration": (spec.get("conversion") or {}).get("min_duration", ""),
           "whisper": spec.get("whisper") or "", "accept": bool(spec.get("accept")),
           "cap_concurrency": caps.pop("concurrency", "")}
    for metric, period in SIMPLE_CAPS:
        counts = dict(caps.get(metric) or {})
        out[f"cap_{period}_{metric}"] = counts.pop(period, "")
        if counts:
            caps[metric] = counts
        else:
            caps.pop(metric, None)
    more = {k: v for k, v in spec.items() if k not in BUYER_INPUTS and v is not None}
    if caps:
        more["caps"] = caps
    out["more"] = json.dumps(more, indent=2) if more else ""
    return out


@bp.route("/buyers/new", methods=["GET", "POST"])
def new_buyer():
    return _buyer_page(None)


@bp.route("/buyers/<int:buyer_id>/edit", methods=["GET", "POST"])
def edit_buyer(buyer_id: int):
    row = db.session.get(Buyer, buyer_id)
    if not visible(row):
        abort(404, "No such buyer.")
    return _buyer_page(row)


def _buyer_page(row: Buyer | None):
    _writer()
    if request.method == "GET":
        return render_template("dashboard/buyer_form.html", buyer=row, form=buyer_form(row),
                               errors={})
    errors: dict = {}
    body = buyer_body(request.form, errors)
    saved = None if errors else _save(buyer_in, admin.save_buyer, body, row, errors)
    if saved is None:
        form = request.form.to_dict() | {"paused": request.form.get("paused") == "on",
                                         "accept": request.form.get("accept") == "on"}
        return render_template("dashboard/buyer_form.html", buyer=row, form=form,
                               errors=errors), 422
    return redirect(url_for("dashboard.buyers"))


def _save(schema, save, body: dict, row, errors: dict):
    """Check ``body`` with the API's schema and save it with the API's service; None (and
    ``errors`` filled, by field) when refused."""
    try:
        data = schema.load(body)
        return changed(save, data, row) if row is not None else changed(save, data)
    except ValidationError as exc:
        errors.update(_messages(exc.messages))
    except Invalid as exc:
        errors.update(_messages(exc.fields or {"form": exc.message}))
    return None


def _messages(messages) -> dict:
    """The schema's messages per top-level field, nested ones flattened into one line."""
    if not isinstance(messages, dict):
        return {"form": _flat(messages)}
    return {str(k): _flat(v) for k, v in messages.items()}


def _flat(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(_flat(v) for v in value)
    return str(value)


# -- routing plans --------------------------------------------------------------------------


def parse_options(text: str, errors: dict, i: int) -> dict:
    """A menu's options: ``1=Roofing, 2=Siding``."""
    options = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            errors[f"step_{i}"] = f"options: {part!r} is not key=value"
            return options
        options[key.strip()] = value.strip()
    return options


def plan_body(form, errors: dict) -> dict:
    """The API's plan body from the form's numbered step and tier rows (blank rows left
    out, the order kept)."""
    steps = []
    for i in range(_rows(form, "step_type")):
        kind = _text(form, f"step_type_{i}")
        if not kind:
            continue
        step: dict = {"type": kind, "text": _text(form, f"step_text_{i}")}
        if kind != "say":
            retries = _number(form, f"step_retries_{i}", errors, f"step_{i}")
            if retries is not None:
                step["retries"] = retries
        if kind == "press" and _text(form, f"step_digit_{i}"):
            step["digit"] = _text(form, f"step_digit_{i}")
        if kind == "zip":
            step["on_failure"] = _text(form, f"step_on_failure_{i}") or "continue"
        if kind == "menu":
            step["tag"] = _text(form, f"step_tag_{i}")
            step["options"] = parse_options(_text(form, f"step_options_{i}"), errors, i)
        steps.append(step)
    tiers = []
    for i in range(_rows(form, "tier_mode")):
        ids = [int(v) for v in form.getlist(f"tier_buyers_{i}") if v.isdigit()]
        if ids:
            tiers.append({"mode": _text(form, f"tier_mode_{i}") or "weighted", "buyers": ids})
    fallback = {k: v for k in ("number", "message") if (v := _text(form, f"fallback_{k}"))}
    body = {"name": _text(form, "name"), "ivr": steps, "tiers": tiers, "fallback": fallback}
    minimum = _number(form, "recovery_min_seconds", errors, "recovery")
    attempts = _number(form, "recovery_attempts", errors, "recovery")
    if minimum is not None or attempts is not None:
        body["recovery"] = {"min_seconds": minimum, "attempts": attempts}
    if publisher := _text(form, "publisher"):
        body["publisher"] = publisher
    return body


def _rows(form, prefix: str) -> int:
    """How many numbered rows of ``prefix`` the form posted (at most 20)."""
    found = [int(m.group(1)) for k in form if (m := re.fullmatch(prefix + r"_(\d{1,2})", k))]
    return min(max(found, default=-1) + 1, 20)


def plan_form(row: RoutingPlan | None) -> dict:
    """The form's values for a plan: its steps and tiers, then blank rows to add more."""
    spec = admin.editable(row) if row is not None else {}
    steps = [{k: step.get(k, "") for k in STEP_FIELDS} for step in spec.get("ivr") or []]
    for step in steps:
        if isinstance(step["options"], dict):
            step["options"] = ", ".join(f"{k}={v}" for k, v in step["options"].items())
    tiers = [{"mode": t.get("mode", "weighted"), "buyers": list(t["buyers"])}
             for t in spec.get("tiers") or []]
    recovery = spec.get("recovery") or {}
    fallback = spec.get("fallback") or {}
    return {"name": spec.get("name", ""), "publisher": spec.get("publisher") or "",
            "steps": steps + [dict.fromkeys(STEP_FIELDS, "")] * max(2, 4 - len(steps)),
            "tiers": tiers + [{"mode": "weighted", "buyers": []}] * max(1, 3 - len(tiers)),
            "fallback_number": fallback.get("number") or "",
            "fallback_message": fallback.get("message") or "",
            "recovery_min_seconds": recovery.get("min_seconds", ""),
            "recovery_attempts": recovery.get("attempts", "")}


def posted_plan_form(form) -> dict:
    """The form as posted, to show it again with its errors."""
    steps = [{k: _text(form, f"step_{k}_{i}") for k in STEP_FIELDS}
             for i in range(_rows(form, "step_type"))]
    tiers = [{"mode": _text(form, f"tier_mode_{i}"),
              "buyers": [int(v) for v in form.getlist(f"tier_buyers_{i}") if v.isdigit()]}
             for i in range(_rows(form, "tier_mode"))]
    return form.to_dict() | {"steps": steps, "tiers": tiers}


@bp.route("/routing-plans/new", methods=["GET", "POST"])
def new_routing_plan():
    return _plan_page(None)


@bp.route("/routing-plans/<int:plan_id>/edit", methods=["GET", "POST"])
def edit_routing_plan(plan_id: int):
    row = db.session.get(RoutingPlan, plan_id)
    if not visible(row):
        abort(404, "No such routing plan.")
    return _plan_page(row)


def _plan_page(row: RoutingPlan | None):
    _writer()
    buyers = db.session.execute(scoped(select(Buyer.id, Buyer.name, Buyer.publisher)
                                       .order_by(Buyer.id), Buyer.publisher)).all()
    if request.method == "GET":
        return render_template("dashboard/routing_plan_form.html", plan=row,
                               form=plan_form(row), buyers=buyers, errors={})
    errors: dict = {}
    body = plan_body(request.form, errors)
    saved = None if errors else _save(plan_in, admin.save_plan, body, row, errors)
    if saved is None:
        if "ivr" in errors:  # validate_ivr names the step: "step 2: ..."
            found = re.match(r"step (\d+): ", errors["ivr"])
            if found:
                errors[f"step_{_posted_step(request.form, int(found.group(1)))}"] = errors["ivr"]
        return render_template("dashboard/routing_plan_form.html", plan=row,
                               form=posted_plan_form(request.form), buyers=buyers,
                               errors=errors), 422
    return redirect(url_for("dashboard.routing_plans") + f"#plan-{saved.id}")


def _posted_step(form, index: int) -> int:
    """The form row of the plan's ``index``-th step (blank rows are left out of the plan)."""
    rows = [i for i in range(_rows(form, "step_type")) if _text(form, f"step_type_{i}")]
    return rows[index] if index < len(rows) else index
