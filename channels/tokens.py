"""Access tokens (WeChat, WeCom), cached in the shared cache (Redis in production) and refreshed
by one worker at a time: whoever takes the lock fetches, the others wait for its result. A token
the provider called expired is dropped only if it is still the cached one, so a dozen workers
that saw the same expiry cause one refresh, not twelve."""

import time
from collections.abc import Callable

from django.core.cache import cache

LOCK_SECONDS = 15
WAIT_SECONDS = 10
EARLY_SECONDS = 300  # refresh this long before the provider's expiry


class TokenUnavailable(Exception):
    pass


def _key(account_id: int) -> str:
    return f"nc:token:{account_id}"


# Each process also remembers a token for a short while: the shared cache is the truth, but
# asking it before every send cost more than the send's own CPU.
LOCAL_SECONDS = 30
_local: dict[int, tuple[str, float]] = {}


def access_token(account_id: int, fetch: Callable[[], tuple[str, int]]) -> str:
    """The account's token; `fetch` returns (token, expires_in seconds) from the provider."""
    remembered = _local.get(account_id)
    if remembered and remembered[1] > time.monotonic():
        return remembered[0]
    token = _shared_token(account_id, fetch)
    _local[account_id] = (token, time.monotonic() + LOCAL_SECONDS)
    return token


def _shared_token(account_id: int, fetch: Callable[[], tuple[str, int]]) -> str:
    token = cache.get(_key(account_id))
    if token:
        return token
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if cache.add(_key(account_id) + ":lock", 1, timeout=LOCK_SECONDS):
            try:
                token = cache.get(_key(account_id))  # someone may have finished just before us
                if not token:
                    token, expires_in = fetch()
                    token_store(account_id, token, expires_in)
                return token
            finally:
                cache.delete(_key(account_id) + ":lock")
        time.sleep(0.05)
        token = cache.get(_key(account_id))
        if token:
            return token
    raise TokenUnavailable("timed out waiting for another worker's token refresh")


def token_expired(account_id: int, stale: str) -> None:
    """Forget `stale`, unless another worker already replaced it."""
    _local.pop(account_id, None)
    if cache.get(_key(account_id)) == stale:
        cache.delete(_key(account_id))


def token_store(account_id: int, token: str, expires_in: int) -> None:
    _local.pop(account_id, None)
    cache.set(_key(account_id), token, timeout=max(60, expires_in - EARLY_SECONDS))
