"""Rate limits per channel account, shared by every worker through Redis: token buckets, and
sliding windows for providers that count "N in any minute" (a WeCom group robot).

`take` never blocks and never drops: it answers how long to wait for the next token, and the
caller puts the delivery back in the outbox for that long. Without Redis (the embedded default,
one worker) the limits live in the process.
"""

import collections
import secrets
import threading
import time

import redis
from django.conf import settings

from .models import Channel

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

# KEYS[1] sorted set of grant times (ms); ARGV: limit, window (ms), a unique member suffix.
# Atomic in Redis: the count, the grant and the answer cannot interleave between workers.
_SLIDE = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(math.max(1, tonumber(oldest[2]) + window - now + 1) / 1000)
"""

_client = None
_script = None
_slide_script = None
_local: dict[str, tuple[float, float]] = {}
_local_windows: dict[str, collections.deque] = {}
_local_lock = threading.Lock()


def _redis():
    global _client, _script, _slide_script
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL)
        _script = _client.register_script(_TAKE)
        _slide_script = _client.register_script(_SLIDE)
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


def take_sliding(bucket: str, *, limit: int, window_seconds: float = 60.0) -> float:
    """Grant one send if fewer than `limit` were granted in the last `window_seconds`; 0.0 when
    granted, else the seconds until the oldest grant leaves the window. Unlike a bucket (a full
    burst, then the refill on top: 20 + 1 every 3 s for 20/minute), no window of that length
    ever holds more than `limit` grants."""
    window_ms = int(window_seconds * 1000)
    if settings.REDIS_URL:
        _redis()
        return float(_slide_script(keys=[f"nc:sw:{bucket}"], args=[limit, window_ms, secrets.token_hex(4)]))
    with _local_lock:
        now = time.monotonic()
        grants = _local_windows.setdefault(bucket, collections.deque())
        while grants and grants[0] <= now - window_seconds:
            grants.popleft()
        if len(grants) < limit:
            grants.append(now)
            return 0.0
        return max(0.001, grants[0] + window_seconds - now)


# WeCom group robot: "每个机器人发送的消息不能超过20条/分钟" (past it: errcode 45009 "api freq out of
# limit"). The window is counted here when the send is granted and at WeCom when the request
# arrives; the margin covers the time between the two (claim, render, the request on the wire).
ROBOT_PER_MINUTE = 20
ROBOT_WINDOW_SECONDS = 60 + 2


def take_for_account(account) -> float:
    """The account's own limit: a sliding window for WeCom robots (never more than 20 in any
    minute, whatever the account says), a token bucket for everything else."""
    if account.channel == Channel.WECOM_ROBOT:
        limit = min(account.rate_limit_per_minute or ROBOT_PER_MINUTE, ROBOT_PER_MINUTE)
        return take_sliding(f"account:{account.pk}", limit=limit, window_seconds=ROBOT_WINDOW_SECONDS)
    return take(f"account:{account.pk}", per_minute=account.rate_limit_per_minute)
