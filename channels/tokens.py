"""Access tokens (WeChat, WeCom), cached in the shared cache (Redis in production) and refreshed
by one worker at a time: whoever takes the lock fetches, the others wait for its result. A token
the provider called expired is dropped only if it is still the cached one, so a dozen workers
that saw the same expiry cause one refresh, not twelve.

Every request for a new token is recorded (TokenRefresh: account, when, why, the provider's
answer), shown read-only in the admin and purged after TOKEN_REFRESH_RETENTION_DAYS."""

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.utils import timezone

from .metrics import TOKEN_REFRESHES
from .models import TokenRefresh, TokenRefreshReason

logger = logging.getLogger(__name__)

LOCK_SECONDS = 15
WAIT_SECONDS = 10
EARLY_SECONDS = 300  # refresh this long before the provider's expiry


class TokenUnavailable(Exception):
    pass


def _key(account_id: int) -> str:
    return f"nc:token:{account_id}"


def _invalid_key(account_id: int) -> str:
    # Set when the provider refused the cached token, so the refresh it causes says why.
    return f"nc:token:{account_id}:invalid"


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
                    token, expires_in = refresh_recorded(account_id, fetch, reason=_reason(account_id))
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
        cache.set(_invalid_key(account_id), 1, timeout=LOCK_SECONDS + WAIT_SECONDS)
        cache.delete(_key(account_id))


def token_store(account_id: int, token: str, expires_in: int) -> None:
    _local.pop(account_id, None)
    cache.set(_key(account_id), token, timeout=max(60, expires_in - EARLY_SECONDS))


def _reason(account_id: int) -> str:
    if cache.get(_invalid_key(account_id)):
        cache.delete(_invalid_key(account_id))
        return TokenRefreshReason.INVALID
    try:
        known = TokenRefresh.objects.filter(account_id=account_id, ok=True).exists()
    except DatabaseError:  # the database is away: the send may still go; the reason is a guess
        logger.warning("token refresh reason of account %s unknown: database unavailable", account_id)
        return TokenRefreshReason.EXPIRED
    return TokenRefreshReason.EXPIRED if known else TokenRefreshReason.FIRST_USE


def refresh_recorded(account_id: int, fetch: Callable[[], tuple[str, int]], *, reason: str) -> tuple[str, int]:
    """Call `fetch` and record the refresh, whether it worked or not; its exception (the
    provider's refusal, carrying a result with the provider's code) goes on to the caller."""
    try:
        token, expires_in = fetch()
    except Exception as err:
        result = getattr(err, "result", None)
        _record(
            account_id,
            reason,
            ok=False,
            error_code=getattr(result, "code", "") or type(err).__name__,
            error_message=getattr(result, "message", "") or str(err),
        )
        raise
    _record(account_id, reason, ok=True, expires_in=expires_in)
    return token, expires_in


def _record(account_id: int, reason: str, *, ok: bool, **fields) -> None:
    TOKEN_REFRESHES.labels(str(account_id), reason, "ok" if ok else "failed").inc()
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction: a failure stays here
            TokenRefresh.objects.create(
                account_id=account_id,
                reason=reason,
                ok=ok,
                expires_in=fields.get("expires_in"),
                error_code=str(fields.get("error_code", ""))[:64],
                error_message=str(fields.get("error_message", ""))[:500],
            )
    except Exception:  # a record that cannot be written must not stop the send that needed the token
        logger.exception("token refresh of account %s not recorded", account_id)


def token_refreshes_purge(*, older_than_days: int | None = None) -> int:
    """Delete refresh records older than the retention; returns how many."""
    days = settings.TOKEN_REFRESH_RETENTION_DAYS if older_than_days is None else older_than_days
    deleted, _ = TokenRefresh.objects.filter(at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
