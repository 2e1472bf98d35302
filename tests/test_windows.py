"""The fixed-window counter behind the service's rate limits (reports, wrong tokens)."""

from __future__ import annotations

from pools.windows import count_in_window


def test_the_first_count_starts_the_window_and_later_ones_keep_it(redis_client):
    assert count_in_window(redis_client, "dni:test-window", 60) == (1, 60)
    redis_client.expire("dni:test-window", 30)  # time passes: 30 s of the window left
    used, left = count_in_window(redis_client, "dni:test-window", 60)
    assert used == 2 and 29 <= left <= 30  # not pushed back by the second count


def test_a_key_never_outlives_its_window(redis_client):
    redis_client.set("dni:test-window", 5)  # left without an expiry, say by older code
    assert count_in_window(redis_client, "dni:test-window", 60) == (6, 60)
    assert 0 < redis_client.ttl("dni:test-window") <= 60
