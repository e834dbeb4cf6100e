"""The shared cache (Redis), degrading instead of failing: with Redis unreachable a read is a
miss and a write is dropped, so every caller falls back to what it would do on a cold cache
(the catalog reads PostgreSQL, a token is fetched again). `incr` alone still raises, because
its callers (the API rate limit) need to know the count is not shared.

`add_many` (not in Django's cache API) is `add` for many keys in one pipelined round trip; callers
that may run on another cache (the embedded `make run`'s local memory) fall back to `add`.

After a failure the cache is skipped for `DOWN_SECONDS`: an unreachable host would otherwise cost
every call its connect timeout.
"""

import logging
import threading
import time
from functools import cached_property

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

DOWN_SECONDS = 1.0
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class CacheUnavailable(RedisConnectionError):
    """Raised by `incr` (only) while the cache is unreachable."""


class ReusedRedisClient(RedisCacheClient):
    """Django builds a new `redis.Redis` for every cache call (about 100 µs of CPU: its table of
    response callbacks); one per connection pool does the same work, and is thread-safe."""

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = getattr(pool, "_nc_client", None)
        if client is None:
            client = pool._nc_client = self._client(connection_pool=pool)
        return client

    def add_many(self, data: dict, timeout) -> set:
        """SET NX of every key in one pipelined round trip; the keys that were absent (now set)."""
        pipe = self.get_client(write=True).pipeline(transaction=False)
        for key, value in data.items():
            pipe.set(key, self._serializer.dumps(value), ex=timeout, nx=True)
        return {key for key, added in zip(data, pipe.execute(), strict=True) if added}


class FailSoftRedisCache(RedisCache):
    _down_until = 0.0
    _lock = threading.Lock()
    _clients: dict = {}  # one client (and its connection pools) per process and configuration

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusedRedisClient

    @cached_property
    def _cache(self):
        """The process's client for this configuration. Django keeps a cache object per context,
        not per thread, and the web server runs each request in a context of its own
        (notifycenter.asgi): Django's own `_cache` made a new client, new pools and a new Redis
        connection for every request (11% of a web process's time under load, py-spy). redis-py's
        pools are thread-safe and make themselves anew after a fork."""
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with FailSoftRedisCache._lock:
            client = FailSoftRedisCache._clients.get(key)
            if client is None:
                client = FailSoftRedisCache._clients[key] = self._class(self._servers, **self._options)
        return client

    def _call(self, name, fallback, *args, **kwargs):
        return self._soft(getattr(super(), name), fallback, *args, **kwargs)

    def _soft(self, call, fallback, *args, **kwargs):
        if time.monotonic() < FailSoftRedisCache._down_until:
            return fallback
        try:
            return call(*args, **kwargs)
        except _UNREACHABLE as err:
            with FailSoftRedisCache._lock:
                if time.monotonic() >= FailSoftRedisCache._down_until:
                    logger.warning("cache unreachable (%s): working without it", type(err).__name__)
                FailSoftRedisCache._down_until = time.monotonic() + DOWN_SECONDS
            return fallback

    @classmethod
    def is_down(cls) -> bool:
        return time.monotonic() < cls._down_until

    def get(self, key, default=None, version=None):
        return self._call("get", default, key, default, version)

    def get_many(self, keys, version=None):
        return self._call("get_many", {}, keys, version)

    def has_key(self, key, version=None):
        return self._call("has_key", False, key, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("add", False, key, value, timeout, version)

    def add_many(self, data: dict, timeout=DEFAULT_TIMEOUT, version=None) -> set:
        """`add` of each key in one round trip; the keys added (none while the cache is away)."""
        timeout = self.get_backend_timeout(timeout)
        if not data or not timeout:  # no expiry, or one that deletes at once: `add`'s own ways
            return {key for key, value in data.items() if self.add(key, value, timeout, version)}
        made = {self.make_and_validate_key(key, version=version): key for key in data}
        added = self._soft(self._cache.add_many, set(), {k: data[key] for k, key in made.items()}, timeout)
        return {made[k] for k in added}

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set", None, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set_many", list(data), data, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("touch", False, key, timeout, version)

    def delete(self, key, version=None):
        return self._call("delete", False, key, version)

    def delete_many(self, keys, version=None):
        return self._call("delete_many", None, keys, version)

    def incr(self, key, delta=1, version=None):
        marker = object()
        result = self._call("incr", marker, key, delta, version)
        if result is marker:
            raise CacheUnavailable("the cache is unreachable")
        return result
