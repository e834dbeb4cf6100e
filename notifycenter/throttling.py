"""Per-API-key request rate limit: a fixed one-minute window counted in the cache (Redis in
production), answered 429 `rate_limited` with Retry-After.

Redis is a helper, not a gate: when the cache cannot be reached the limit fails open to a count
kept in this process (the same per-minute limit, per process), so events keep going into
PostgreSQL while Redis is away.
"""

import logging
import math
import threading
import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from .models import ApiKey

logger = logging.getLogger(__name__)

_local: dict[str, int] = {}
_local_lock = threading.Lock()
_warned_window = [-1]


def _local_count(counter: str, window: int) -> int:
    """The window's count in this process; older windows are forgotten."""
    with _local_lock:
        for stale in [k for k in _local if not k.endswith(f":{window}")]:
            del _local[stale]
        _local[counter] = _local.get(counter, 0) + 1
        if _warned_window[0] != window:
            _warned_window[0] = window
            logger.warning("rate-limit counters unreachable in the cache: counting per process this minute")
        return _local[counter]


class ApiKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey) or not key.rate_limit_per_minute:
            return True
        now = time.time()
        window = int(now // 60)
        counter = f"nc:throttle:{key.pk}:{window}"
        try:
            cache.add(counter, 0, timeout=120)
            count = cache.incr(counter)
        except Exception:  # redis-py's ConnectionError, TimeoutError, or a half-open socket
            count = _local_count(counter, window)
        self._wait = math.ceil(60 - (now % 60))
        return count <= key.rate_limit_per_minute

    def wait(self):
        return self._wait
