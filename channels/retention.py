"""What channels keeps about people, and for how long: the retention purge of deliveries and
their attempts, and of the providers' receipts; one person's data for a PIPL access or erasure
request."""

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .masking import mask_address
from .models import (
    HASHED,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OtpCode,
    Preference,
    ProviderReceipt,
    ReceiptOutcome,
    Recipient,
)
from .otp import normalize_phone, phone_digest
from .services import deliveries_cancel_recipient

UNFINISHED = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


def deliveries_unfinished(*, event_refs: list[int]) -> set[int]:
    """The events among these that still have a delivery waiting, going out, or waiting for
    reconciliation (unknown and not finished)."""
    return set(
        Delivery.objects.filter(event_ref__in=event_refs)
        .filter(Q(status__in=UNFINISHED) | Q(status=DeliveryStatus.UNKNOWN, finished_at__isnull=True))
        .values_list("event_ref", flat=True)
        .distinct()
    )


def deliveries_purge(*, event_refs: list[int]) -> int:
    """Delete these events' deliveries and (cascading) their attempts; returns deliveries deleted."""
    deleted = Delivery.objects.filter(event_ref__in=event_refs).delete()[1]
    return deleted.get("channels.Delivery", 0)


def receipts_purge(*, older_than_days: int, batch_size: int = 5000, max_batches: int | None = None) -> int:
    """Delete the providers' receipts received more than `older_than_days` ago (EVENT_RETENTION_DAYS):
    the deliveries they name go with the event purge (a receipt outlived its delivery, SET_NULL),
    and the unmatched and refused ones named nobody of ours. A receipt still waiting for its
    delivery's send to settle stays. Returns how many went; 0 days or less keeps everything."""
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = ProviderReceipt.objects.filter(received_at__lt=cutoff).exclude(outcome=ReceiptOutcome.EARLY)
    return delete_in_batches(old.order_by("received_at"), batch_size=batch_size, max_batches=max_batches)


def delete_in_batches(ordered, *, batch_size: int, max_batches: int | None) -> int:
    """Delete the rows of an ordered queryset the oldest first, `batch_size` a statement (each its
    own transaction, so none holds many locks for long), at most `max_batches` of them (None: all).
    Returns how many rows went."""
    deleted, batches = 0, 0
    while max_batches is None or batches < max_batches:
        ids = list(ordered.values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        deleted += ordered.model.objects.filter(pk__in=ids).delete()[0]
        batches += 1
    return deleted


def recipient_export(*, audience: str, external_id: str) -> dict | None:
    """Everything channels holds about one person, addresses in full (the person asked for them)."""
    recipient = Recipient.objects.filter(audience=audience, external_id=external_id).first()
    if recipient is None:
        return None
    deliveries = Delivery.objects.filter(recipient=recipient).order_by("id")
    return {
        "directory": {
            "audience": recipient.audience,
            "external_id": recipient.external_id,
            "name": recipient.name,
            "phone": recipient.phone,
            "wechat_mini_openid": recipient.wechat_mini_openid,
            "wechat_oa_openid": recipient.wechat_oa_openid,
            "wechat_unionid": recipient.wechat_unionid,
            "push_registration_ids": recipient.push_registration_ids,
            "wecom_userid": recipient.wecom_userid,
            "locale": recipient.locale,
            "created_at": recipient.created_at.isoformat(),
            "updated_at": recipient.updated_at.isoformat(),
        },
        "consents": {c.template_id: c.remaining for c in recipient.consents.all()},
        "preferences": _preferences(recipient),
        "sms_codes": _sms_codes(recipient.phone),
        "deliveries": [
            {
                "id": d.pk,
                "channel": d.channel,
                "address": d.address,
                "status": d.status,
                "template": d.template_code,
                "event_ref": d.event_ref,
                "content": d.content,
                "created_at": d.created_at.isoformat(),
                "attempts": [
                    {"number": a.number, "outcome": a.outcome, "started_at": a.started_at.isoformat()}
                    for a in d.attempts.all()
                ],
                # What happened to it afterwards, the providers' receipts included (their code and words).
                "status_changes": [
                    {"status": c.status, "at": c.at.isoformat(), "source": c.source, "code": c.code, "detail": c.detail}
                    for c in d.status_changes.all()
                ],
            }
            for d in deliveries.prefetch_related("attempts", "status_changes")
        ],
    }


def _preferences(recipient: Recipient) -> dict | None:
    """What the person chose to receive, as they (or the backend for them) said it."""
    preference = Preference.objects.filter(recipient=recipient).first()
    return None if preference is None else {"channels": preference.channels, "categories": preference.categories}


def _sms_codes(phone: str) -> list[dict]:
    """The SMS codes sent to this phone still kept (OTP_* settings; never the code itself)."""
    if not phone:
        return []
    codes = OtpCode.objects.filter(phone_hash=phone_digest(normalize_phone(phone))).order_by("id")
    return [
        {
            "purpose": c.purpose,
            "phone": c.phone,
            "created_at": c.created_at.isoformat(),
            "expires_at": c.expires_at.isoformat(),
            "used_at": c.used_at.isoformat() if c.used_at else None,
            "failed_tries": c.failed_tries,
        }
        for c in codes
    ]


@transaction.atomic
def recipient_erase(*, audience: str, external_id: str) -> dict | None:
    """Erase one person's data in channels. The directory row stays as a bare id (messages point
    at it) with every address and the name blanked; consents go; deliveries stay as the record of
    what was sent, with the address masked, the content and the providers' raw answers emptied;
    deliveries not yet sent are cancelled. Returns counts, or None for an unknown person."""
    recipient = Recipient.objects.select_for_update().filter(audience=audience, external_id=external_id).first()
    if recipient is None:
        return None
    now = timezone.now()
    cancelled = deliveries_cancel_recipient(recipient_id=recipient.pk, reason="erased")
    deliveries = list(Delivery.objects.filter(recipient=recipient).only("id", "channel", "address"))
    for delivery in deliveries:
        # Kept masked already; the inbox's "audience:id" goes too.
        masked = "" if delivery.channel == "inbox" else mask_address(delivery.channel, delivery.address)
        Delivery.objects.filter(pk=delivery.pk).update(address=masked, content={})
    DeliveryAttempt.objects.filter(delivery__recipient=recipient).update(raw_response=None, error_message="")
    consents = recipient.consents.all().delete()[0]
    Recipient.objects.filter(pk=recipient.pk).update(
        name="",
        phone="",
        wechat_mini_openid="",
        wechat_oa_openid="",
        wechat_unionid="",
        push_registration_ids=[],
        wecom_userid="",
        **{f"{field}_hash": "" for field in HASHED},
        updated_at=now,
    )
    return {"deliveries_emptied": len(deliveries), "deliveries_cancelled": cancelled, "consents_deleted": consents}
