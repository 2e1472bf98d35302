"""Device, browser and OS from a user-agent string, parsed once and cached.

``user_agents`` decides the device class and whether the visitor is a bot; we feed it
from ua-parser's compiled backend because its default pure-Python regexes cost about
1 ms per new string, more than the whole request budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ua_parser
from user_agents.parsers import UserAgent, parse_browser, parse_device, parse_operating_system

MAX_UA_LENGTH = 512


@dataclass(frozen=True)
class Device:
    device_type: str  # mobile, tablet, desktop, bot or other
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    is_bot: bool


class _FastUserAgent(UserAgent):
    """user_agents' classification over ua-parser's fast parse result."""

    def __init__(self, ua_string: str):
        result = ua_parser.parse(ua_string)
        ua, os_, dev = result.user_agent, result.os, result.device
        self.ua_string = ua_string
        self.browser = parse_browser(
            ua.family if ua else "Other", ua.major if ua else None,
            ua.minor if ua else None, ua.patch if ua else None)
        self.os = parse_operating_system(
            os_.family if os_ else "Other", os_.major if os_ else None,
            os_.minor if os_ else None, os_.patch if os_ else None,
            os_.patch_minor if os_ else None)
        self.device = parse_device(
            dev.family if dev else "Other", dev.brand if dev else None,
            dev.model if dev else None)


def _version(parts) -> str | None:
    text = ".".join(str(p) for p in parts if p not in (None, ""))
    return text or None


def _known(family: str) -> str | None:
    return None if family in ("Other", "") else family


def warm_up() -> None:
    """Build ua-parser's matchers now (about 0.1 s): a web worker calls this before it
    serves, else its first new visitor waits for them."""
    ua_parser.parse("Mozilla/5.0")


def describe(user_agent: str) -> Device:
    """Classify a user agent; an empty one counts as a bot (browsers always send one)."""
    return parsed((user_agent or "")[:MAX_UA_LENGTH])


# Keyed on what is parsed, never the whole header: 8 KB user agents differing after the
# first MAX_UA_LENGTH characters share one entry instead of filling memory.
@lru_cache(maxsize=16_384)
def parsed(ua_string: str) -> Device:
    """Classify a user agent already cut to MAX_UA_LENGTH characters (cached)."""
    if not ua_string.strip():
        return Device("bot", None, None, None, None, True)
    ua = _FastUserAgent(ua_string)
    if ua.is_bot:
        kind = "bot"
    elif ua.is_tablet:
        kind = "tablet"
    elif ua.is_mobile:
        kind = "mobile"
    elif ua.is_pc:
        kind = "desktop"
    else:
        kind = "other"
    return Device(kind, _known(ua.browser.family), _version(ua.browser.version),
                  _known(ua.os.family), _version(ua.os.version), ua.is_bot)
