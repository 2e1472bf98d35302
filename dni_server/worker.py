"""The background worker: keeps pools loaded, ends lapsed leases, records lease history.

Run as ``flask --app wsgi dni worker`` (any number of them), or as a thread inside the
app on the embedded default. Every step is safe to run in several processes at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from sqlalchemy import select

from attribution import accuracy_summary
from attribution.conversions.delivery import Deliverer
from attribution.insight.jobs import InsightJobs
from attribution.numbers.autoscale_step import Autoscaler, service_hooks
from attribution.numbers.upkeep import NumberUpkeep
from attribution.recorder import drain_pool
from attribution.webhooks.delivery import WebhookDeliverer
from dni_server import metrics
from dni_server.timefmt import now_ms
from pools import catalog
from pools.errors import PoolError
from pools.events import BATCH
from pools.models import Pool

log = logging.getLogger(__name__)
ACCURACY_LOOK_SECONDS = 30.0  # with no pool's accuracy due, look again this much later


class Worker:
    def __init__(self, app, interval: float = 0.5, pool_refresh: float = 5.0):
        self.app = app
        self.services = app.extensions["dni"]
        self.interval = interval
        self.pool_refresh = pool_refresh
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
        self._pool_ids: list[int] = []
        self._pools_read_at = 0.0
        self.stop_event = threading.Event()
        self.conversions = Deliverer.from_settings(
            self.services.session_factory, self.services.redis_admin, self.services.settings,
            observe=metrics.observe_delivery)
        from dni_server.api.webhook_subscriptions import call_renderer

        self.webhooks = WebhookDeliverer.from_settings(
            self.services.session_factory, self.services.settings, call_renderer(app))
        self.insight = InsightJobs.from_settings(
            self.services.session_factory, self.services.settings, app.instance_path)
        self.numbers = NumberUpkeep.from_settings(
            self.services.session_factory, self.services.pools, self.services.settings)
        self.autoscale = Autoscaler(self.services.session_factory, self.services.pools,
                                    self.numbers.api,
                                    service_hooks(self.services.settings.public_url))
        from dni_server.callback_worker import CallbackStep  # issue 18: web callbacks

        self.callbacks = CallbackStep(app)
        self._accuracy_idle_until = 0.0

    def pool_ids(self, db) -> list[int]:
        if time.monotonic() - self._pools_read_at > self.pool_refresh:
            self._pool_ids = list(db.scalars(select(Pool.id).where(Pool.active)))
            self._pools_read_at = time.monotonic()
        return self._pool_ids

    def run_once(self) -> int:
        """One pass of everything (conversions, then every pool); returns events recorded."""
        self.deliver_conversions()
        self.deliver_webhooks()
        self.place_callbacks()
        return self.record_once()

    def record_once(self) -> int:
        """One pass over every pool; returns how many events were recorded."""
        pools = self.services.pools
        recorded = 0
        with self.services.session_factory() as db:
            recorded += self.services.inbox.replay(db, pools)
            ids = self.pool_ids(db)
            if not ids:
                return 0
            for pool_id, loaded in zip(ids, pools.is_loaded(ids), strict=True):
                now = now_ms()
                try:
                    if not loaded:
                        catalog.load_pool_by_id(db, pools, pool_id, now)
                    pools.reclaim(pool_id, now)
                except PoolError:
                    continue  # being loaded elsewhere, or Redis is away: next pass
                while True:
                    count = drain_pool(pools, db, pool_id, self.consumer)
                    recorded += count
                    if count < BATCH:
                        break
        return recorded

    def deliver_conversions(self) -> None:
        """Send due offline conversions; a platform's trouble never stops the recorder."""
        try:
            self.conversions.run_once()
        except Exception:
            log.exception("conversion delivery pass failed")

    def deliver_webhooks(self) -> None:
        """Send due outgoing webhooks; a slow receiver never stops the recorder."""
        try:
            self.webhooks.run_once()
        except Exception:
            log.exception("webhook delivery pass failed")

    def place_callbacks(self) -> None:
        """Place due web callbacks; a carrier's trouble stops nothing else."""
        try:
            self.callbacks.run_once()
        except Exception:
            log.exception("web callback pass failed")

    def analyse_recordings(self) -> None:
        """Fetch and analyse due call recordings; a carrier's trouble stops nothing else."""
        try:
            self.insight.run_once()
        except Exception:
            log.exception("recording insight pass failed")

    def manage_numbers(self) -> None:
        """Finish interrupted number purchases and release numbers that are due (issue 19)."""
        try:
            self.numbers.run_once(now_ms())
        except Exception:
            log.exception("numbers upkeep pass failed")
        try:
            self.autoscale.run_if_due()  # grow or trim pools by their autoscale policy
        except Exception:
            log.exception("autoscale pass failed")

    def summarise_accuracy(self) -> None:
        """Model one pool's last week for the pool list, when one is due (none due: look
        again in ``ACCURACY_LOOK_SECONDS``); seconds of CPU each, so on a thread of its own."""
        if time.monotonic() < self._accuracy_idle_until:
            return
        try:
            with self.services.session_factory() as db:
                done = accuracy_summary.refresh_one(db, self.services.redis_admin, now_ms(),
                                                    self.services.pools.prefix)
        except Exception:
            log.exception("accuracy summary pass failed")
            done = None
        if done is None:
            self._accuracy_idle_until = time.monotonic() + ACCURACY_LOOK_SECONDS

    def run_forever(self) -> None:
        # Conversions go out on a thread of their own: a platform answering slowly must
        # never hold back lease recording and reclaim. Recordings too: their analysis is
        # seconds of CPU per call.
        threading.Thread(target=self._repeat, args=(self.deliver_conversions,),
                         name="dni-conversions", daemon=True).start()
        threading.Thread(target=self._repeat, args=(self.deliver_webhooks,),
                         name="dni-webhooks", daemon=True).start()
        threading.Thread(target=self._repeat, args=(self.analyse_recordings,),
                         name="dni-insight", daemon=True).start()
        threading.Thread(target=self._repeat, args=(self.manage_numbers,),
                         name="dni-numbers", daemon=True).start()
        threading.Thread(target=self._repeat, args=(self.place_callbacks,),
                         name="dni-callbacks", daemon=True).start()
        threading.Thread(target=self._repeat, args=(self.summarise_accuracy,),
                         name="dni-accuracy", daemon=True).start()
        self._repeat(self.record_once)

    def _repeat(self, step) -> None:
        pause = self.interval
        while not self.stop_event.is_set():
            try:
                step()
                pause = self.interval
            except Exception:
                # Redis or SQL away: events wait in Redis; back off and try again.
                log.exception("worker pass failed")
                pause = min(pause * 2, 10.0)
            self.stop_event.wait(pause)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="dni-worker", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_event.set()
