"""One-time SMS codes: issue, verify, and hand the code to the SMS backend exactly once.

What is kept: an HMAC of the code (keyed by SECRET_KEY, so a copied table does not give codes up
to a 10^6 brute force), an HMAC of the phone for the per-phone limits, the phone masked for
people, and a Fernet-sealed copy of the code that lives only until the provider has answered.
The code itself is never in a Delivery's content, a log line, an admin page or an API answer.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from .fields import seal, unseal
from .masking import mask_phone
from .models import Delivery, OtpCode, Recipient

# A mainland mobile number, with or without +86; codes are counted and checked per number, so
# both spellings are one phone.
MAINLAND_MOBILE = r"^(\+86)?1[3-9]\d{9}$"


def normalize_phone(phone: str) -> str:
    return phone.strip().removeprefix("+86")


class OtpError(Exception):
    """A refused code request or check; answered as {"code", "message", "fields"}."""

    def __init__(self, code: str, message: str, fields: dict | None = None, http_status: int = 400, **extra):
        super().__init__(message)
        self.error_code = code
        self.message = message
        self.fields = fields or {}
        self.http_status = http_status
        self.retry_after = extra.get("retry_after")


def _digest(*parts: str) -> str:
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def phone_digest(phone: str) -> str:
    return _digest("phone", phone)


def code_digest(otp_phone_hash: str, purpose: str, code: str) -> str:
    return _digest("code", otp_phone_hash, purpose, code)


def _lock_phone(phone_hash: str) -> None:
    """Serialize code requests for one phone, so that two at once cannot both pass the limits.
    SQLite (the embedded default) takes a database-wide write lock anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(phone_hash[:15], 16)])


def _check_limits(phone_hash: str, now) -> None:
    limits = settings.OTP_LIMITS  # [(window seconds, most codes in it), ...]
    longest = max(window for window, _ in limits)
    recent = list(
        OtpCode.objects.filter(phone_hash=phone_hash, created_at__gt=now - timedelta(seconds=longest))
        .order_by("-created_at")
        .values_list("created_at", flat=True)
    )
    for window, most in limits:
        inside = [t for t in recent if t > now - timedelta(seconds=window)]
        if len(inside) >= most:
            # Free again when the oldest code that counts against this window leaves it.
            retry_after = int((inside[most - 1] + timedelta(seconds=window) - now).total_seconds()) + 1
            raise OtpError(
                "otp_rate_limited",
                f"At most {most} {'code' if most == 1 else 'codes'} per {window} seconds for one phone; "
                f"try again in {retry_after} s.",
                {"phone": [f"limit {most}/{window}s reached"]},
                http_status=429,
                retry_after=retry_after,
            )


def otp_issue(*, phone: str, purpose: str, client: str = "") -> OtpCode:
    """A new code for this phone and purpose, inside the caller's transaction; earlier codes for
    the same phone and purpose stop counting (verify reads only the newest). The code leaves
    this function only sealed: the SMS backend unseals it for the provider's request."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("otp_issue must run inside transaction.atomic()")
    now = timezone.now()
    phone = normalize_phone(phone)
    phone_hash = phone_digest(phone)
    _lock_phone(phone_hash)
    _check_limits(phone_hash, now)
    code = f"{secrets.randbelow(10**settings.OTP_LENGTH):0{settings.OTP_LENGTH}d}"
    otp = OtpCode.objects.create(
        phone_hash=phone_hash,
        phone=mask_phone(phone),
        purpose=purpose,
        client=client,
        code_hash=code_digest(phone_hash, purpose, code),
        sealed_code=seal(code),
        expires_at=now + timedelta(seconds=settings.OTP_TTL_SECONDS),
    )
    return otp


def otp_attach(otp: OtpCode, *, event_ref: int) -> None:
    OtpCode.objects.filter(pk=otp.pk).update(event_ref=event_ref)


def otp_verify(*, phone: str, purpose: str, code: str, client: str = "") -> OtpCode:
    """Accept the newest code the client asked for, for this phone and purpose, once; 5 wrong tries
    lock it. Another client's code is not found: it can neither check nor lock it."""
    phone_hash = phone_digest(normalize_phone(phone))
    now = timezone.now()
    with transaction.atomic():
        otp = (
            OtpCode.objects.select_for_update()
            .filter(phone_hash=phone_hash, purpose=purpose, client=client)
            .order_by("-created_at", "-pk")
            .first()
        )
        refusal = _refusal(otp, now)
        if refusal is None and not hmac.compare_digest(otp.code_hash, code_digest(phone_hash, purpose, code)):
            # The wrong try is counted and committed before the refusal is raised.
            OtpCode.objects.filter(pk=otp.pk).update(failed_tries=F("failed_tries") + 1)
            left = settings.OTP_MAX_TRIES - otp.failed_tries - 1
            tries = "try" if left == 1 else "tries"  # API messages are English, whatever the admin's language
            refusal = (
                OtpError(
                    "otp_invalid",
                    f"Wrong code; {left} {tries} left.",
                    {"code": [f"wrong, {left} {tries} left"]},
                )
                if left > 0
                else _locked()
            )
        if refusal is None:
            OtpCode.objects.filter(pk=otp.pk).update(used_at=now, sealed_code="")
            otp.used_at = now
    if refusal is not None:
        raise refusal
    return otp


def _locked() -> OtpError:
    return OtpError("otp_locked", "Too many wrong tries; ask for a new code.", {"code": ["locked"]})


def _refusal(otp: OtpCode | None, now) -> OtpError | None:
    if otp is None:
        return OtpError("otp_not_found", "No code was sent to this phone for this purpose.", {"code": ["unknown"]})
    if otp.used_at is not None:
        return OtpError("otp_used", "This code was already used; ask for a new one.", {"code": ["used"]})
    if otp.expires_at <= now:
        return OtpError("otp_expired", "This code has expired; ask for a new one.", {"code": ["expired"]})
    if otp.failed_tries >= settings.OTP_MAX_TRIES:
        return _locked()
    return None


@dataclass(frozen=True)
class CodeForSend:
    pk: int | None = None
    code: str = ""
    failure: tuple[str, str] | None = None  # (error code, message) when there is nothing to send


def otp_code_for_delivery(delivery: Delivery) -> CodeForSend:
    """The live code behind a verification-code delivery, for the SMS request only."""
    otp = OtpCode.objects.filter(event_ref=delivery.event_ref).order_by("-pk").first() if delivery.event_ref else None
    if otp is None:
        return CodeForSend(failure=("otp_missing", "No one-time code belongs to this delivery."))
    if otp.used_at is not None or otp.expires_at <= timezone.now():
        otp_code_spent(otp.pk)
        return CodeForSend(failure=("otp_expired", "The one-time code expired or was used before it was sent."))
    if not otp.sealed_code:
        return CodeForSend(failure=("otp_already_sent", "This code was already handed to the provider."))
    return CodeForSend(pk=otp.pk, code=unseal(otp.sealed_code))


def otp_code_spent(pk: int) -> None:
    OtpCode.objects.filter(pk=pk).update(sealed_code="")


CODE_SLOT = "{code}"


def otp_release_for(delivery: Delivery) -> None:
    """A code delivery reached a final state (sent, failed, skipped…): its sealed copy goes."""
    if (
        delivery.channel == "sms"
        and delivery.event_ref
        and any(CODE_SLOT in str(v) for v in (delivery.content.get("params") or {}).values())
    ):
        OtpCode.objects.filter(event_ref=delivery.event_ref).exclude(sealed_code="").update(sealed_code="")


def otp_purge(*, older_than_days: int = 30) -> int:
    """Codes are evidence for a month (who asked, when, how many tries), then go; and so does the
    phone of a directory entry codes went to (`otp-…`, scenarios/otp.py) once none of its codes
    is left."""
    deleted, _ = OtpCode.objects.filter(created_at__lt=timezone.now() - timedelta(days=older_than_days)).delete()
    otp_entries_forget()
    return deleted


def otp_entries_forget() -> int:
    """Blank the phone of every `otp-…` directory entry none of whose codes is kept any more: it
    was there for the SMS to go out, and a phone that only ever received a code stayed in the
    directory for good. The entry stays as a bare id (its messages point at it); a new code for
    the phone writes the phone again. Returns how many were blanked."""
    live = {digest[:16] for digest in OtpCode.objects.values_list("phone_hash", flat=True).distinct()}
    entries = Recipient.objects.filter(external_id__startswith="otp-").exclude(phone_hash="")
    gone = [pk for pk, external_id in entries.values_list("pk", "external_id") if external_id[4:] not in live]
    return Recipient.objects.filter(pk__in=gone).update(phone="", phone_hash="", updated_at=timezone.now())
