"""Visit capture: what a landing request tells us about where the visitor came from.

Pure functions over plain values; the source rules follow common analytics practice:
source is ``utm_source``, else ``source``/``ref``, else the platform of a click id, else a
known search engine or the referrer's domain, else ``(direct)``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from attribution.devices import Device
from attribution.geo import NOWHERE, Location
from attribution.models import CLICK_ID_FIELDS, UTM_FIELDS
from pools.rules import VisitFacts

# The longest URL stored (landing page, referrer, each page view): what browsers and search
# engines reliably handle; the rest of a longer one is cut off, never stored.
MAX_URL_LENGTH = 2048
MAX_VALUE_LENGTH = 255
MAX_COOKIE_LENGTH = 4096  # a browser keeps no longer cookie: anything longer is not one

# The ad platforms' ids, as the snippet reads them from cookies (raw) or as a client that
# parsed them sends them (bare). _ga: "GA1.1.<random>.<seconds>" -> "<random>.<seconds>".
GA_CLIENT_ID = re.compile(r"(?:GA\d\.\d{1,3}\.)?(\d{1,20}\.\d{1,20})")
# _ga_<measurement id>: "GS1.1.<session id>.<n>..." or "GS2.1.s<session id>$o<n>$g..".
GA_SESSION_ID = re.compile(r"(?:GS\d\.\d{1,3}\.s?)?(\d{1,20})(?:[.$].*)?", re.DOTALL)
# _fbp: "fb.<subdomain index>.<ms created>.<random>", plus the appendix Meta's parameter
# builder adds to some; stored exactly as read, never made up.
FBP = re.compile(r"fb\.\d\.\d{13}\.\d{1,20}(?:\.[A-Za-z0-9_-]{1,64})?")

# Platform and medium each click id implies when the URL names no utm_medium.
CLICK_ID_SOURCES = {
    "gclid": ("google", "cpc"), "gbraid": ("google", "cpc"), "wbraid": ("google", "cpc"),
    "dclid": ("google", "display"), "msclkid": ("bing", "cpc"),
    "fbclid": ("facebook", "social"), "ttclid": ("tiktok", "paid_social"),
    "li_fat_id": ("linkedin", "paid_social"),
}
SEARCH_ENGINES = {
    "google": "google", "bing": "bing", "yahoo": "yahoo", "duckduckgo": "duckduckgo",
    "baidu": "baidu", "yandex": "yandex", "ecosia": "ecosia", "ask": "ask",
}


@dataclass
class Visit:
    """Everything captured at the start of a session (keys match attribution.models.Visit)."""

    landing_url: str | None = None
    landing_path: str | None = None
    referrer: str | None = None
    referrer_domain: str | None = None
    source: str | None = None
    medium: str | None = None
    keyword: str | None = None
    utm: dict = field(default_factory=dict)
    click_ids: dict = field(default_factory=dict)

    def facts(self) -> VisitFacts:
        return VisitFacts(
            source=self.source, medium=self.medium, campaign=self.utm.get("utm_campaign"),
            referrer_domain=self.referrer_domain, landing_path=self.landing_path,
            has_click_id=bool(self.click_ids),
        )

    def columns(self) -> dict:
        """The visit's own columns, flat: what the rules read plus the campaign fields and
        click ids. Built field by field: ``asdict`` deep-copies, and this is on the request
        path."""
        return {"landing_url": self.landing_url, "landing_path": self.landing_path,
                "referrer": self.referrer, "referrer_domain": self.referrer_domain,
                "source": self.source, "medium": self.medium, "keyword": self.keyword,
                **self.utm, **self.click_ids}

    def record(self, device: Device, location: Location = NOWHERE) -> dict:
        """The flat dict stored as the session's row."""
        return enriched(self.columns(), device, location)


def enriched(row: dict, device: Device, location: Location = NOWHERE) -> dict:
    """``row`` with the device and location columns set (the recorder's enrichment)."""
    row.update(device_type=device.device_type, browser=device.browser,
               browser_version=device.browser_version, os=device.os,
               os_version=device.os_version)
    row.update(country=location.country, region=location.region, city=location.city)
    return row


@dataclass(frozen=True)
class AdIds:
    """The ad platforms' ids of a visit and the visitor's ad consent (None: not asked)."""

    consent: bool | None = None
    ga_client_id: str | None = None
    ga_session_id: str | None = None
    fbp: str | None = None

    @classmethod
    def parse(cls, consent: bool | None = None, ga_client_id: str | None = None,
              ga_session_id: str | None = None, fbp: str | None = None) -> AdIds:
        """Keep what has its platform's shape; with consent refused, none of the ids."""
        if consent is None and ga_client_id is None and ga_session_id is None and fbp is None:
            return _NO_AD_IDS  # most heartbeats: the snippet sends ids only when they change
        if consent is False:
            return cls(consent=False)
        return cls(consent, _group(GA_CLIENT_ID, ga_client_id),
                   _group(GA_SESSION_ID, ga_session_id), _group(FBP, fbp, 0))

    def __bool__(self) -> bool:
        # Asked on every heartbeat: plain attribute reads (asdict deep-copies).
        return not (self.consent is None and self.ga_client_id is None
                    and self.ga_session_id is None and self.fbp is None)

    def columns(self) -> dict:
        """The visit columns this sets. Refused consent clears the ids read under an earlier
        one; otherwise an id not sent keeps the value already stored."""
        if self.consent is False:
            return {"ad_consent": False, "ga_client_id": None, "ga_session_id": None,
                    "fbp": None}
        # Attribute reads, not asdict (a deep copy): this is on every new session's path.
        ids = (("ga_client_id", self.ga_client_id), ("ga_session_id", self.ga_session_id),
               ("fbp", self.fbp))
        out = {name: value for name, value in ids if value is not None}
        if self.consent is not None:
            out["ad_consent"] = self.consent
        return out


_NO_AD_IDS = AdIds()


def _group(pattern: re.Pattern, value: str | None, group: int = 1) -> str | None:
    match = pattern.fullmatch(value.strip()) if value else None
    return match.group(group) if match else None


def clip(value: str | None, limit: int = MAX_VALUE_LENGTH) -> str | None:
    if value is None:
        return None
    # NUL (a %00 in the page's URL) cannot be stored in SQL text and would hold up the
    # recorder's whole batch; it carries no meaning, so it is dropped.
    value = value.replace("\x00", "").strip()
    return value[:limit] or None


def stored_url(url: str | None) -> str | None:
    """A URL as stored: without its fragment (OAuth redirects put tokens there), at most
    MAX_URL_LENGTH characters."""
    return clip(url.partition("#")[0], MAX_URL_LENGTH) if url else None


# A dotted IPv4 address exactly as ipaddress writes it (no leading zeros, octets <= 255):
# most visitors, recognised without building an address object on every new session.
PLAIN_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                        r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


def client_ip(ip: str | None) -> str | None:
    """A client address as keyed and stored, or None when it is not one.

    An IPv4 visitor reaching a dual-stack listener arrives as ``::ffff:a.b.c.d``: it is that
    IPv4 address, so it is keyed and stored as one (not as part of the IPv6 block ``::``
    that every IPv4 visitor would share).
    """
    if ip and PLAIN_IPV4.fullmatch(ip):
        return ip
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    mapped = address.ipv4_mapped if address.version == 6 else None
    return str(mapped or address)


def domain_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host[4:] if host.startswith("www.") else host


def search_engine(domain: str | None) -> str | None:
    if not domain:
        return None
    labels = domain.split(".")
    for label in labels[:-1]:
        if label in SEARCH_ENGINES:
            return SEARCH_ENGINES[label]
    return None


def query_params(url: str) -> dict[str, str]:
    """First value of each query parameter (some click ids arrive before a ``#``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return {}
    params: dict[str, str] = {}
    for query in (parts.query, parts.fragment.partition("?")[2]):
        for key, value in parse_qsl(query, keep_blank_values=False) if query else ():
            params.setdefault(key, value)
    return params


def capture(url: str | None, referrer: str | None, keyword_params=()) -> Visit:
    """Read source, medium, campaign fields, click ids and keyword from the landing URL."""
    # Click ids may sit in a hash route's query ("/#/offer?gclid=..."): read from the whole
    # URL, but store it without the fragment.
    whole = clip(url, MAX_URL_LENGTH)
    params = query_params(whole) if whole else {}
    url = stored_url(url)
    referrer = stored_url(referrer)
    try:
        path = urlsplit(url).path or "/" if url else None
    except ValueError:
        path = None
    utm = {name: clip(params[name]) for name in UTM_FIELDS if params.get(name)}
    # Click ids are case-sensitive tokens: stored exactly as received.
    click_ids = {name: clip(params[name]) for name in CLICK_ID_FIELDS if params.get(name)}
    ref_domain = domain_of(referrer)
    if ref_domain and url and ref_domain == domain_of(url):
        ref_domain = None  # moving between pages of the same site is not a referral

    source = utm.get("utm_source") or clip(params.get("source")) or clip(params.get("ref"))
    medium = utm.get("utm_medium")
    first_click = next(iter(click_ids), None)
    engine = search_engine(ref_domain)
    if not source and first_click:
        source = CLICK_ID_SOURCES[first_click][0]
    if not source:
        source = engine or ref_domain or "(direct)"
    if not medium:
        if first_click:
            medium = CLICK_ID_SOURCES[first_click][1]
        elif engine:
            medium = "organic"
        elif ref_domain:
            medium = "referral"
        elif source == "(direct)":
            medium = "(none)"

    keyword = utm.get("utm_term")
    for name in keyword_params:
        if keyword:
            break
        keyword = clip(params.get(name))
    return Visit(landing_url=url, landing_path=clip(path, MAX_URL_LENGTH), referrer=referrer,
                 referrer_domain=ref_domain, source=source, medium=medium, keyword=keyword,
                 utm=utm, click_ids=click_ids)


def path_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None
