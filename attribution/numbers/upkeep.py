"""The worker's part in buying and releasing numbers: one pass of reconcile and release."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from attribution.conversions.credentials import CredentialBox
from attribution.numbers import provisioning, release
from attribution.numbers.accounts import CarrierUrls, api_for
from attribution.numbers.carriers import NumberApi
from attribution.numbers.models import CarrierAccount
from pools.leases import PoolService

log = logging.getLogger(__name__)


@dataclass
class NumberUpkeep:
    session_factory: object
    pools: PoolService
    box: CredentialBox
    urls: CarrierUrls
    every_seconds: float = 30.0  # carriers are asked at most this often
    _last: float = field(default=-1e9, repr=False)

    @classmethod
    def from_settings(cls, session_factory, pools: PoolService, settings) -> NumberUpkeep:
        return cls(session_factory, pools, CredentialBox(settings.credentials_keys),
                   CarrierUrls(twilio=settings.twilio_api_url, telnyx=settings.telnyx_api_url))

    def api(self, account: CarrierAccount) -> NumberApi:
        return api_for(account, self.box, self.urls)

    def run_once(self, now_ms: int, *, force: bool = False) -> dict[str, int]:
        """Reconcile interrupted purchases, then release what is due; {} when it is not
        time yet."""
        if not force and time.monotonic() - self._last < self.every_seconds:
            return {}
        self._last = time.monotonic()
        with self.session_factory() as db:
            counts = provisioning.reconcile(db, self.pools, self.api, now_ms)
            counts.update(release.release_due(db, self.api))
        if any(counts.values()):
            log.info("numbers upkeep: %s", counts)
        return counts
