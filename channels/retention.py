"""What channels keeps about people, and for how long: the retention purge of deliveries and
their attempts, and one person's data for a PIPL access or erasure request."""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .masking import mask_address
from .models import HASHED, Delivery, DeliveryAttempt, DeliveryStatus, Recipient
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
        "deliveries": [
            {
                "id": d.pk,
                "channel": d.channel,
                "status": d.status,
                "template": d.template_code,
                "event_ref": d.event_ref,
                "content": d.content,
                "created_at": d.created_at.isoformat(),
                "attempts": [
                    {"number": a.number, "outcome": a.outcome, "started_at": a.started_at.isoformat()}
                    for a in d.attempts.all()
                ],
            }
            for d in deliveries.prefetch_related("attempts")
        ],
    }


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
