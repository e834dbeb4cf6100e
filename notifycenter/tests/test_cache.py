"""The shared cache's `add_many`: Django's `add` for many keys in one round trip, fail-soft."""

import pytest
from django.core.cache import caches

from notifycenter.cache import FailSoftRedisCache


@pytest.fixture
def shared(settings):
    if "FailSoftRedisCache" not in settings.CACHES["default"]["BACKEND"]:
        pytest.fail("these tests need REDIS_URL (the suite runs against Redis)")
    cache = caches["default"]
    cache.delete_many(["nc:test:a", "nc:test:b", "nc:test:c"])
    yield cache
    cache.delete_many(["nc:test:a", "nc:test:b", "nc:test:c"])


def test_add_many_sets_only_the_absent_keys_and_names_them(shared):
    shared.set("nc:test:a", 9)

    added = shared.add_many({"nc:test:a": 1, "nc:test:b": 2, "nc:test:c": {"x": 3}}, timeout=60)

    assert added == {"nc:test:b", "nc:test:c"}
    assert shared.get_many(["nc:test:a", "nc:test:b", "nc:test:c"]) == {
        "nc:test:a": 9,
        "nc:test:b": 2,
        "nc:test:c": {"x": 3},
    }
    assert 0 < shared._cache.get_client().ttl(shared.make_key("nc:test:b")) <= 60  # as `add`'s timeout


def test_add_many_adds_nothing_while_the_cache_is_away(settings):
    away = FailSoftRedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}})
    FailSoftRedisCache._down_until = 0.0
    try:
        assert away.add_many({"nc:test:a": 1}, timeout=60) == set()
        assert FailSoftRedisCache.is_down()  # and the next calls skip it for a second
    finally:
        FailSoftRedisCache._down_until = 0.0


def test_each_request_context_reuses_the_processs_redis_connection(shared):
    """The web server runs each request in a context of its own, and Django keeps a cache object
    per context: each must use the process's client, not connect to Redis anew."""
    import contextvars

    def in_a_request():
        cache = caches["default"]
        cache.get("nc:test:a")
        return cache, cache._cache.get_client()

    first_cache, first_client = contextvars.Context().run(in_a_request)
    pool = first_client.connection_pool
    made = pool._created_connections  # earlier tests' threads may have opened some already
    second_cache, second_client = contextvars.Context().run(in_a_request)
    assert first_cache is not second_cache  # Django's per-context objects, as the server makes them
    assert first_client is second_client
    assert pool._created_connections == made  # the second request connected to nothing
