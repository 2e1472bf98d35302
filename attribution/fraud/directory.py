"""What the pre-ring check reads: the block list, the sites' policies and each tracking
number's owner (site, publisher, pool). Read from SQL every ``ttl_seconds``, kept per
process and mirrored in Redis like the call forwarding map: no SQL per call, and still
served while SQL is away.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

from sqlalchemy import or_, select

from attribution.fraud.lists import entry_dict
from attribution.fraud.models import BlockEntry, FraudPolicy
from attribution.models import StaticNumber
from pools.keys import fraud_mirror_key
from pools.mirror import MirroredCache
from pools.models import Pool, PoolNumber, utcnow

ALL = "fraud"


@dataclass(frozen=True)
class FraudMap:
    """value -> block entries; site id -> policy settings; number -> its owner."""

    blocks: dict[str, list[dict]] = field(default_factory=dict)
    policies: dict[int, dict] = field(default_factory=dict)
    owners: dict[str, dict] = field(default_factory=dict)


def load_map(db, now: dt.datetime | None = None) -> FraudMap:
    now = now or utcnow()
    blocks: dict[str, list[dict]] = {}
    for entry in db.scalars(select(BlockEntry).where(
            or_(BlockEntry.expires_at.is_(None), BlockEntry.expires_at > now))):
        blocks.setdefault(entry.value, []).append(entry_dict(entry))
    policies = {p.site_id: dict(p.settings or {}) for p in db.scalars(select(FraudPolicy))}
    owners: dict[str, dict] = {}
    for number, site_id, publisher, pool_id in db.execute(
            select(PoolNumber.number, Pool.site_id, Pool.publisher, Pool.id).join(Pool)
            .where(PoolNumber.status != "retired")):
        owners[number] = {"site_id": site_id, "publisher": publisher, "pool_id": pool_id}
    for number, site_id, publisher in db.execute(
            select(StaticNumber.number, StaticNumber.site_id, StaticNumber.publisher)
            .where(StaticNumber.status == "active")):
        owners[number] = {"site_id": site_id, "publisher": publisher, "pool_id": None}
    return FraudMap(blocks, policies, owners)


class FraudDirectory:
    """The map, from SQL every ``ttl_seconds``, served stale (or from its Redis copy) while
    SQL is down; with neither, an empty map (nothing listed, default policies)."""

    def __init__(self, session_factory, redis, prefix: str, ttl_seconds: float = 10.0,
                 clock=time.monotonic):
        self.session_factory = session_factory
        key = fraud_mirror_key(prefix)
        self._cache = MirroredCache(
            self._load, redis=redis, key=lambda _all: key, encode=encode_map,
            decode=decode_map, ttl_seconds=ttl_seconds, default=FraudMap, clock=clock)

    def current(self) -> FraudMap:
        return self._cache.get(ALL)

    def invalidate(self) -> None:
        self._cache.invalidate()

    def _load(self, _all) -> FraudMap:
        with self.session_factory() as db:
            return load_map(db)


def encode_map(fraud: FraudMap) -> str:
    return json.dumps({"blocks": fraud.blocks, "policies": fraud.policies,
                       "owners": fraud.owners})


def decode_map(raw: str | bytes) -> FraudMap:
    data = json.loads(raw)
    return FraudMap(data["blocks"], {int(k): v for k, v in data["policies"].items()},
                    data["owners"])
