"""Per-API-key request rate limit: a fixed one-minute window counted in the cache (Redis in
production), answered 429 `rate_limited` with Retry-After."""

import math
import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from .models import ApiKey


class ApiKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey) or not key.rate_limit_per_minute:
            return True
        now = time.time()
        window = int(now // 60)
        counter = f"nc:throttle:{key.pk}:{window}"
        cache.add(counter, 0, timeout=120)
        count = cache.incr(counter)
        self._wait = math.ceil(60 - (now % 60))
        return count <= key.rate_limit_per_minute

    def wait(self):
        return self._wait
