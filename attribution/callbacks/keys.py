"""The callbacks' Redis keys: every key string of this package is written here.

All of a site's keys carry the hash tag ``{cb<site id>}``, so the limit script (one round
trip) touches one Redis Cluster slot.

===================================  ==========  =========================================
key                                  type        contents
===================================  ==========  =========================================
``dni:cb:{cb7}:to:<client>:<phone>``  sorted set  the client's requests to one number (ms)
``dni:cb:{cb7}:numbers:<client>``     sorted set  numbers the client asked for -> last (ms)
``dni:cb:{cb7}:flagged:<client>``     string      "<until ms>|<why>": the client is refused
``dni:cb:{cb7}:open``                 sorted set  the site's callbacks in progress -> lapse (ms)
===================================  ==========  =========================================

``<client>`` is the hash of the visitor's IP and user agent (never the raw values).
"""

from __future__ import annotations

from pools.keys import DEFAULT_PREFIX


def site_tag(site_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:cb:{{cb{int(site_id)}}}"


def to_number_key(site_id: int, client: str, phone: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{site_tag(site_id, prefix)}:to:{client}:{phone}"


def numbers_key(site_id: int, client: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{site_tag(site_id, prefix)}:numbers:{client}"


def flagged_key(site_id: int, client: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{site_tag(site_id, prefix)}:flagged:{client}"


def open_key(site_id: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{site_tag(site_id, prefix)}:open"
