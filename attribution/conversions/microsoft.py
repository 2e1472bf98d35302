"""Microsoft Advertising: Campaign Management v13 ``ApplyOfflineConversions`` (SOAP 1.1).

Checked with the search tool against MicrosoftDocs/Advertising-docs
(``Advertising/bingads-13/campaign-management-service/applyofflineconversions.md``,
``applyofflineconversionadjustments.md``, ``offlineconversion.md``,
``offlineconversionadjustment.md``, ``guides/handle-service-errors-exceptions.md``):

- envelope ``s`` = ``http://schemas.xmlsoap.org/soap/envelope/``; header and body elements in
  ``https://bingads.microsoft.com/CampaignManagement/v13``; header order ``Action``
  (``mustUnderstand="1"``), ``AuthenticationToken`` (OAuth access token), ``CustomerAccountId``,
  ``CustomerId``, ``DeveloperToken``;
- ``OfflineConversion`` children in schema order: ``ConversionCurrencyCode``,
  ``ConversionName`` (exactly the goal's name), ``ConversionTime`` (UTC ``xs:dateTime``, within
  90 days), ``ConversionValue``, ..., ``MicrosoftClickId``; at most 1,000 per request;
- ``ApplyOfflineConversionAdjustments`` with ``OfflineConversionAdjustment`` children
  ``AdjustmentCurrencyCode``, ``AdjustmentTime``, ``AdjustmentType`` (``Retract``/``Restate``),
  ``AdjustmentValue`` (only for ``Restate``), ``ConversionName``, ``ConversionTime``,
  ``MicrosoftClickId``: the original name, time and click id identify the conversion;
- answers: 200 with ``PartialErrors`` (``BatchError`` with ``Index``), or HTTP 500 with a SOAP
  fault whose detail holds ``AdApiError``/``OperationError``/``BatchError`` items; code 117
  ``CallRateExceeded`` means wait 60 s, code 0 ``InternalError`` is temporary.

Unconfirmed: the HTTP ``SOAPAction`` header value (we send the operation name, as WCF basic
bindings expect); the hashing rules of ``HashedPhoneNumber`` (so we never send it).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from xml.sax.saxutils import escape

from attribution.conversions.base import Conversion, Outcome, PreparedRequest, TimeWindow
from attribution.conversions.destination import (
    CURRENCY,
    Destination,
    OAuthToken,
    Reason,
    Skip,
    every,
    rfc3339,
    short,
)

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
V13_NS = "https://bingads.microsoft.com/CampaignManagement/v13"
SERVICE_PATH = "/Api/Advertiser/CampaignManagement/v13/CampaignManagementService.svc"
WINDOW = TimeWindow(dt.timedelta(days=90),
                    too_old="microsoft: conversion time is more than 90 days ago",
                    future="microsoft: conversion time is in the future")
RATE_LIMITED, INTERNAL = "117", "0"


def _value(value) -> str:
    """An ``xs:double`` lexical form: plain decimal, no exponent."""
    return format(value.normalize(), "f") if value is not None else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element) -> dict[str, str]:
    return {_local(child.tag): (child.text or "").strip() for child in element}


def parse_errors(body: bytes) -> tuple[list[dict], str]:
    """Every error item (``BatchError``, ``OperationError``, ``AdApiError``) and the faultstring."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return [], ""
    items = [_children(e) for e in root.iter()
             if _local(e.tag) in ("BatchError", "OperationError", "AdApiError", "EditorialError")]
    fault = next((e.text or "" for e in root.iter() if _local(e.tag) == "faultstring"), "")
    return items, fault.strip()


def _describe(item: dict) -> str:
    return f"{item.get('ErrorCode') or 'Error'} ({item.get('Code', '?')}): {item.get('Message', '')}".strip()


class MicrosoftAdvertising(Destination):
    kind = "microsoft"
    max_batch = 1000
    per_minute = 60
    supports_retraction = True

    def __init__(self, config: Mapping):
        super().__init__(config)
        c = self.config
        self.base_url = c.url("base_url", "https://campaign.api.bingads.microsoft.com")
        self.customer_id = c.text("customer_id", required=True, pattern=r"\d+")
        self.account_id = c.text("account_id", required=True, pattern=r"\d+")
        self.developer_token = self.secret(c.text("developer_token", required=True))
        self.token = OAuthToken(self, c, "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                                scope="https://ads.microsoft.com/msads.manage offline_access")
        self.max_batch = min(c.integer("max_batch", 1000), 1000)

    def batch_key(self, conv: Conversion) -> str:
        return "conversion" if conv.kind == "conversion" else "adjustment"

    def check(self, conv: Conversion, now: dt.datetime) -> Reason | None:
        if conv.kind not in ("conversion", "retraction", "restatement"):
            return Reason(f"microsoft: unknown conversion kind {conv.kind!r}")
        if not conv.consent:
            return Skip("microsoft: no consent: the msclkid may not be sent")
        if not conv.msclkid:
            return Skip("microsoft: no msclkid for this visit")
        if not (conv.name or "").strip():
            return Reason("microsoft: no conversion goal name")
        if late := WINDOW.problem(conv, now):
            return Reason(late)
        if conv.kind == "restatement" and conv.value is None:
            return Reason("microsoft: a restatement needs a value")
        if conv.value is not None and not CURRENCY.match(conv.currency or ""):
            return Reason(f"microsoft: invalid currency {conv.currency!r}")
        return self._common_checks(conv)

    # -- the SOAP request ----------------------------------------------------------------
    def _conversion(self, conv: Conversion) -> str:
        parts = []
        if conv.value is not None:
            parts.append(f"<ConversionCurrencyCode>{escape(conv.currency)}</ConversionCurrencyCode>")
        parts.append(f"<ConversionName>{escape(conv.name)}</ConversionName>")
        parts.append(f"<ConversionTime>{rfc3339(conv.occurred_at)}</ConversionTime>")
        if conv.value is not None:
            parts.append(f"<ConversionValue>{_value(conv.value)}</ConversionValue>")
        parts.append(f"<MicrosoftClickId>{escape(conv.msclkid)}</MicrosoftClickId>")
        return "<OfflineConversion>" + "".join(parts) + "</OfflineConversion>"

    def _adjustment(self, conv: Conversion, now: dt.datetime) -> str:
        restate = conv.kind == "restatement"
        # the adjustment may not precede the conversion nor lie in the future
        when = max(now, conv.occurred_at)
        parts = []
        if restate:
            parts.append(f"<AdjustmentCurrencyCode>{escape(conv.currency)}</AdjustmentCurrencyCode>")
        parts.append(f"<AdjustmentTime>{rfc3339(when)}</AdjustmentTime>")
        parts.append(f"<AdjustmentType>{'Restate' if restate else 'Retract'}</AdjustmentType>")
        if restate:
            parts.append(f"<AdjustmentValue>{_value(conv.value)}</AdjustmentValue>")
        parts.append(f"<ConversionName>{escape(conv.name)}</ConversionName>")
        parts.append(f"<ConversionTime>{rfc3339(conv.occurred_at)}</ConversionTime>")
        parts.append(f"<MicrosoftClickId>{escape(conv.msclkid)}</MicrosoftClickId>")
        return "<OfflineConversionAdjustment>" + "".join(parts) + "</OfflineConversionAdjustment>"

    def prepare(self, convs: list[Conversion], now: dt.datetime) -> PreparedRequest:
        if not convs or len(convs) > self.max_batch:
            raise ValueError(f"microsoft: a request holds 1 to {self.max_batch} conversions")
        keys = {self.batch_key(c) for c in convs}
        if len(keys) != 1:
            raise ValueError("microsoft: conversions and adjustments go in separate requests (use split())")
        if keys.pop() == "conversion":
            operation, wrapper = "ApplyOfflineConversions", "OfflineConversions"
            items = "".join(self._conversion(c) for c in convs)
        else:
            operation, wrapper = "ApplyOfflineConversionAdjustments", "OfflineConversionAdjustments"
            items = "".join(self._adjustment(c, now) for c in convs)
        envelope = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="{SOAP_NS}">'
            f'<s:Header xmlns="{V13_NS}">'
            f'<Action mustUnderstand="1">{operation}</Action>'
            f"<AuthenticationToken>{escape(self.token.current or '')}</AuthenticationToken>"
            f"<CustomerAccountId>{self.account_id}</CustomerAccountId>"
            f"<CustomerId>{self.customer_id}</CustomerId>"
            f"<DeveloperToken>{escape(self.developer_token)}</DeveloperToken>"
            "</s:Header>"
            f'<s:Body><{operation}Request xmlns="{V13_NS}"><{wrapper}>{items}</{wrapper}>'
            f"</{operation}Request></s:Body></s:Envelope>"
        )
        url = self.base_url + SERVICE_PATH
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation}
        return PreparedRequest("POST", url, headers, envelope.encode("utf-8"), url)

    def authenticate(self, session, now: dt.datetime, timeout: float) -> None:
        self.token.ensure(session, now, timeout)

    # -- the answer ------------------------------------------------------------------------
    def read(self, status: int, headers: Mapping[str, str], body: bytes,
             convs: list[Conversion]) -> list[Outcome]:
        items, fault = parse_errors(body)
        indexed = {}
        for item in items:
            if item.get("Index", "").isdigit() and int(item["Index"]) < len(convs):
                indexed.setdefault(int(item["Index"]), []).append(_describe(item))
        general = [item for item in items if not item.get("Index", "").isdigit()]
        if status == 200:
            return [Outcome(c.key, "failed", "microsoft: " + "; ".join(indexed[i])) if i in indexed
                    else Outcome(c.key, "sent", "microsoft: applied") for i, c in enumerate(convs)]
        codes = {item.get("Code") for item in general}
        if status in (429, 502, 503, 504) or RATE_LIMITED in codes or INTERNAL in codes or not items:
            wait = 60.0 if RATE_LIMITED in codes else None
            detail = "; ".join(_describe(i) for i in general) or fault or short(body) or "no answer body"
            if not items and not 500 <= status < 600 and status != 429:
                return every(convs, "failed", f"microsoft: HTTP {status}: {detail}")
            return every(convs, "retry", f"microsoft: HTTP {status}: {detail}", retry_after=wait)
        if general:
            detail = "; ".join(_describe(i) for i in general)
            return every(convs, "failed", f"microsoft: HTTP {status}: {detail}")
        # a fault naming items: those failed; the others were not applied, so send them again
        return [Outcome(c.key, "failed", "microsoft: " + "; ".join(indexed[i])) if i in indexed
                else Outcome(c.key, "retry", "microsoft: batch rejected for another item; resend",
                             extra={"resend": True})
                for i, c in enumerate(convs)]
