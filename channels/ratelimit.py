"""Token buckets per channel account, shared by every worker through Redis.

`take` never blocks and never drops: it answers how long to wait for the next token, and the
caller puts the delivery back in the outbox for that long. Without Redis (the embedded default,
one worker) the buckets live in the process.
"""

import threading
import time

import redis
from django.conf import settings

# KEYS[1] bucket; ARGV: tokens per second, capacity. Redis' own clock, so workers agree.
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""

_client = None
_script = None
_local: dict[str, tuple[float, float]] = {}
_local_lock = threading.Lock()


def _redis():
    global _client, _script
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL)
        _script = _client.register_script(_TAKE)
    return _script


def take(bucket: str, *, per_minute: int, burst: int | None = None) -> float:
    """Take one token from `bucket`; 0.0 when granted, else the seconds until one is free."""
    rate = per_minute / 60.0
    capacity = float(burst or per_minute)
    if settings.REDIS_URL:
        return float(_redis()(keys=[f"nc:rl:{bucket}"], args=[rate, capacity]))
    with _local_lock:
        now = time.monotonic()
        tokens, ts = _local.get(bucket, (capacity, now))
        tokens = min(capacity, tokens + (now - ts) * rate)
        if tokens >= 1:
            _local[bucket] = (tokens - 1, now)
            return 0.0
        _local[bucket] = (tokens, now)
        return (1 - tokens) / rate
