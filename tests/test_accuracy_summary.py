"""Each pool's recent accuracy, modelled by the worker one pool at a time and kept in Redis
(attribution/accuracy_summary.py): the pool list reads it instead of modelling in the request."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from test_pool_accuracy import START_MS, played_pool

from attribution import accuracy, accuracy_summary
from dni_server.extensions import db
from dni_server.worker import Worker
from pools import keys
from pools.models import Pool

DAY_MS = 86_400_000
NOW_MS = START_MS + DAY_MS  # the played five minutes are within the last week


def services(app):
    return app.extensions["dni"]


def refresh(app, now_ms: int = NOW_MS) -> int | None:
    with app.app_context():
        return accuracy_summary.refresh_one(db.session, services(app).redis_admin, now_ms,
                                            services(app).pools.prefix)


def stored(app, pool_ids: list[int]) -> dict:
    return accuracy_summary.stored(services(app).redis_admin, pool_ids,
                                   services(app).pools.prefix)


def test_the_worker_models_each_pool_once_per_refresh_oldest_first(app, redis_client):
    with app.app_context():
        small, _ = played_pool(redis_client, db.session, size=12)
        large, span_ms = played_pool(redis_client, db.session, size=200)
    assert stored(app, [small, large]) == {small: None, large: None}

    assert refresh(app) == small  # none has an answer: the lowest id first
    assert refresh(app, NOW_MS + 1000) == large
    assert refresh(app, NOW_MS + 2000) is None  # both answered less than a refresh ago

    summaries = stored(app, [small, large])
    with app.app_context():
        pool = db.session.get(Pool, large)
        direct = accuracy.pool_accuracy(db.session, pool, NOW_MS + 1000 - 7 * DAY_MS,
                                        NOW_MS + 1000, 200)
    assert summaries[large].answer == json.loads(json.dumps(direct))
    assert summaries[large].numbers == 200
    assert summaries[large].start_ms == NOW_MS + 1000 - accuracy_summary.RECENT_DAYS * DAY_MS
    below = summaries[small].answer
    assert below["expected_at_current_size"] < below["accuracy_target"]
    key = keys.accuracy_summary_key(large, services(app).pools.prefix)
    assert 0 < redis_client.ttl(key) <= accuracy_summary.KEEP_SECONDS

    later = NOW_MS + accuracy_summary.REFRESH_SECONDS * 1000
    assert refresh(app, later) == small  # due again: the oldest answer first
    assert stored(app, [small])[small].computed_at_ms == later


def test_a_pool_another_worker_is_modelling_is_left_to_it(app, redis_client):
    with app.app_context():
        first, _ = played_pool(redis_client, db.session, size=200)
        second, _ = played_pool(redis_client, db.session, size=200)
    prefix = services(app).pools.prefix
    redis_client.set(keys.accuracy_lock_key(first, prefix), "1", ex=60)
    assert refresh(app) == second
    assert refresh(app, NOW_MS + 1000) is None  # the other is still someone else's
    assert stored(app, [first])[first] is None


def test_a_pool_without_numbers_is_stored_as_such(app, admin, redis_client):
    from factories import make_pool, make_site

    site = make_site(admin)
    pool = make_pool(admin, site, numbers=[])
    assert refresh(app) == pool["id"]
    summary = stored(app, [pool["id"]])[pool["id"]]
    assert summary.numbers == 0 and summary.answer is None


def test_redis_away_reads_as_nothing_stored():
    class Away:
        def pipeline(self, transaction=False):
            return self

        def get(self, key):
            pass

        def execute(self):
            raise RedisConnectionError("down")

    assert accuracy_summary.stored(Away(), [1, 2]) == {1: None, 2: None}


def test_the_workers_step_models_a_pool_then_rests_when_none_is_due(app, redis_client,
                                                                    monkeypatch):
    with app.app_context():
        pool_id, _ = played_pool(redis_client, db.session, size=200)
    monkeypatch.setattr("dni_server.worker.now_ms", lambda: NOW_MS)
    worker = Worker(app)
    worker.summarise_accuracy()
    assert stored(app, [pool_id])[pool_id].computed_at_ms == NOW_MS
    assert worker._accuracy_idle_until == 0.0  # it did something: it looks again at once
    worker.summarise_accuracy()
    assert worker._accuracy_idle_until > 0.0  # nothing due: it rests


def test_a_pool_that_cannot_be_modelled_waits_out_its_lock(app, redis_client, monkeypatch):
    with app.app_context():
        pool_id, _ = played_pool(redis_client, db.session, size=200)

    def fails(*args, **kwargs):
        raise RuntimeError("the model failed")

    monkeypatch.setattr(accuracy_summary, "summarise", fails)
    with pytest.raises(RuntimeError):
        refresh(app)
    monkeypatch.undo()
    lock = keys.accuracy_lock_key(pool_id, services(app).pools.prefix)
    assert redis_client.ttl(lock) > 0  # left to lapse: not tried again on every pass
    assert refresh(app, NOW_MS + 1000) is None
    redis_client.delete(lock)
    assert refresh(app, NOW_MS + 2000) == pool_id
