"""API authentication: `Api-Key` for the hospital backend, `Bearer` JWT for the apps' users.

The views below this layer never import these classes; they read the principal's attributes
(`scopes`, `client` for backends; `inbox_owner` for app users), so the layers keep pointing down.
"""

import hmac
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import jwt
from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions

from channels.rows import rows_where

from .models import ApiKey

INBOX_ROLES = ("patient", "doctor", "pharmacist")
SUB_MAX_LENGTH = 64  # the directory's external id

logger = logging.getLogger(__name__)


class AuthError(exceptions.AuthenticationFailed):
    def __init__(self, code: str, message: str, scheme: str):
        super().__init__(message)
        self.error_code = code
        self.auth_scheme = scheme  # the challenge to answer with, whichever class DRF asks first


@dataclass(frozen=True)
class ApiClient:
    """A backend calling with an API key."""

    client: str
    key_id: int
    scopes: frozenset = field(default_factory=frozenset)
    is_authenticated = True


@dataclass(frozen=True)
class InboxUser:
    """A patient, doctor or pharmacist reading their own station inbox."""

    role: str
    external_id: str
    is_authenticated = True
    scopes = frozenset()

    @property
    def inbox_owner(self) -> tuple[str, str]:
        return (self.role, self.external_id)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header.startswith(self.keyword + " "):
            return None
        raw = header[len(self.keyword) + 1 :].strip()
        parts = raw.split("_")
        if len(parts) < 3 or parts[0] != "nc":
            raise AuthError("invalid_api_key", "The API key is malformed.", self.keyword)
        key = _active_key(parts[1])
        if key is None or not _constant_time_equal(key.hashed_key, ApiKey.hash(raw)):
            raise AuthError("invalid_api_key", "The API key is unknown or revoked.", self.keyword)
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now  # the kept key too: written once a minute, not each request
        return ApiClient(client=key.client, key_id=key.pk, scopes=frozenset(key.scopes)), key

    def authenticate_header(self, request):
        return self.keyword


# Active keys as authentication read them, kept per process for KEY_CACHE_SECONDS: every backend
# request asked PostgreSQL for its key, one statement of the dozen a single event cost. A save,
# delete or revoke in this process forgets them at once (api_keys_forget); other processes stop
# accepting a revoked key within KEY_CACHE_SECONDS. Unknown prefixes are never kept.
KEY_CACHE_SECONDS = 2.0
KEY_CACHE_MAX = 1000
_keys: dict[str, tuple[float, ApiKey]] = {}


def _active_key(prefix: str) -> ApiKey | None:
    now = time.monotonic()
    kept = _keys.get(prefix)
    if kept is not None and now - kept[0] < KEY_CACHE_SECONDS:
        return kept[1]
    # One statement built once (channels/rows.py), not the ORM's.
    found = rows_where(ApiKey, "prefix = %s AND is_active", [prefix])
    if found is None:
        found = ApiKey.objects.filter(prefix=prefix, is_active=True)[:1]
    key = found[0] if found else None
    if key is None:
        _keys.pop(prefix, None)
        return None
    if len(_keys) >= KEY_CACHE_MAX:
        _keys.clear()
    _keys[prefix] = (now, key)
    return key


def api_keys_forget(**kwargs) -> None:
    """Forget the kept keys (after any change to a key: connected to ApiKey's save and delete,
    and called by the revoke action, whose update sends no signal)."""
    _keys.clear()


class InboxTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header.startswith(self.keyword + " "):
            return None
        token = header[len(self.keyword) + 1 :].strip()
        user, claims = inbox_token_read(token)
        return user, claims

    def authenticate_header(self, request):
        return self.keyword


def inbox_token_read(token: str) -> tuple[InboxUser, dict]:
    """The person an inbox JWT names, and its claims; AuthError (with a stable code) otherwise.
    The REST views and the live connections (notifycenter.asgi) authenticate through this."""
    conf = settings.INBOX_JWT
    key = conf["PUBLIC_KEY"] if conf["ALGORITHM"].startswith(("RS", "ES")) else conf["SECRET"]
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[conf["ALGORITHM"]],
            audience=conf["AUDIENCE"],
            leeway=conf["LEEWAY_SECONDS"],
            options={"require": ["sub", "exp", "aud", "role"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise AuthError("token_expired", "The token has expired.", "Bearer") from err
    except jwt.InvalidAudienceError as err:
        raise AuthError("token_wrong_audience", "The token is not meant for this service.", "Bearer") from err
    except jwt.PyJWTError as err:
        # The library's words stay in the log: they describe its internals, not the client's fix.
        logger.info("inbox token refused: %s", err)
        raise AuthError("token_invalid", "The token is invalid.", "Bearer") from err
    for name in ("exp", "iat", "nbf"):
        # PyJWT reads these with int(), which takes "1700000000" (a string) as a number: what
        # follows subtracts and compares them, so anything but a JSON number is refused here.
        if name in claims and (not isinstance(claims[name], int | float) or isinstance(claims[name], bool)):
            raise AuthError("token_invalid", f"The token's {name} must be a number.", "Bearer")
    _lifetime_check(claims, max_hours=conf.get("MAX_LIFETIME_HOURS", 0), leeway=conf["LEEWAY_SECONDS"])
    sub = claims["sub"]
    if not isinstance(sub, str | int) or isinstance(sub, bool) or not (0 < len(str(sub)) <= SUB_MAX_LENGTH):
        raise AuthError("token_invalid", f"The token's sub must be 1 to {SUB_MAX_LENGTH} characters.", "Bearer")
    if "\x00" in str(sub):
        raise AuthError("token_invalid", "The token's sub must not hold NUL characters.", "Bearer")
    if claims["role"] not in INBOX_ROLES:
        raise AuthError("token_invalid", f"The token's role must be one of {', '.join(INBOX_ROLES)}.", "Bearer")
    return InboxUser(role=claims["role"], external_id=str(claims["sub"])), claims


def _lifetime_check(claims: dict, *, max_hours: float, leeway: int) -> None:
    """A token valid for longer than INBOX_JWT_MAX_LIFETIME_HOURS is refused, counted from now and
    from its `iat` when it has one (PyJWT has checked both are numbers)."""
    if not max_hours:
        return
    longest = max_hours * 3600 + leeway
    now = time.time()
    if claims["exp"] - now > longest or ("iat" in claims and claims["exp"] - claims["iat"] > longest):
        raise AuthError(
            "token_invalid",
            f"The token is valid for longer than {max_hours:g} hours "
            "(INBOX_JWT_MAX_LIFETIME_HOURS); issue shorter ones.",
            "Bearer",
        )


def issue_inbox_token(*, role: str, external_id: str, lifetime: timedelta = timedelta(hours=12)) -> str:
    """A token as the hospital backend would issue it (HS256 only; for local use and tests)."""
    conf = settings.INBOX_JWT
    now = timezone.now()
    claims = {"sub": external_id, "role": role, "aud": conf["AUDIENCE"], "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, conf["SECRET"], algorithm="HS256")


def _constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
