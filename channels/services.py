"""The delivery engine: take delivery requests, keep them in the outbox, send, retry, finish."""

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .masking import mask_id, mask_phone
from .models import (
    AttemptOutcome,
    Channel,
    ChannelAccount,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Recipient,
    SubscribeConsent,
)
from .providers import DeliveryResult, backend_for
from .ratelimit import take

logger = logging.getLogger(__name__)

# Tries per channel before a transient failure becomes final.
MAX_ATTEMPTS = {Channel.INBOX: 5, Channel.SMS: 4}
DEFAULT_MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600
ENQUEUE_CHUNK = 10
# A delivery left in "sending" this long belongs to a worker that died mid-send.
STUCK_SENDING_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class DeliveryRequest:
    """What a layer above asks of channels: send this content to this person over this channel."""

    channel: str
    recipient: Recipient
    content: dict
    idempotency_key: str
    not_before: datetime | None = None
    event_ref: int | None = None
    message_ref: int | None = None
    template_code: str = ""
    account: ChannelAccount | None = None


def address_for(*, channel: str, recipient: Recipient, account: ChannelAccount | None = None) -> str:
    """The recipient's address on a channel, or "" when they have none there."""
    match channel:
        case Channel.INBOX:
            return f"{recipient.audience}:{recipient.external_id}"
        case Channel.WECHAT_MINI_SUBSCRIBE:
            return recipient.wechat_mini_openid
        case Channel.WECHAT_OA_TEMPLATE:
            return recipient.wechat_oa_openid
        case Channel.WECOM_APP:
            return recipient.wecom_userid
        case Channel.WECOM_ROBOT:
            # A group robot posts to its group; the account holds the webhook key.
            return "robot"
        case Channel.APP_PUSH:
            return ",".join(recipient.push_registration_ids or [])
        case Channel.SMS:
            return recipient.phone
    return ""


def masked_address(channel: str, address: str) -> str:
    if channel == Channel.SMS:
        return mask_phone(address)
    if channel in (Channel.INBOX, Channel.WECOM_ROBOT):
        return address
    return ",".join(mask_id(part) for part in address.split(","))


def deliveries_create(*, requests: list[DeliveryRequest]) -> list[Delivery]:
    """Write deliveries in the caller's transaction (the outbox); each due one is enqueued on commit.

    A request whose recipient has no address on its channel is kept as skipped `no_address`.
    """
    now = timezone.now()
    defaults = {a.channel: a for a in ChannelAccount.objects.filter(is_default=True, enabled=True)}
    rows = []
    for req in requests:
        account = req.account or defaults.get(req.channel)
        address = address_for(channel=req.channel, recipient=req.recipient, account=account)
        row = Delivery(
            channel=req.channel,
            account=account,
            recipient=req.recipient,
            address=address,
            content=req.content,
            idempotency_key=req.idempotency_key,
            not_before=req.not_before or now,
            event_ref=req.event_ref,
            message_ref=req.message_ref,
            template_code=req.template_code,
        )
        if not address:
            row.status = DeliveryStatus.SKIPPED
            row.last_error_code = "no_address"
            row.last_error_message = f"The recipient has no address on {req.channel}."
            row.finished_at = now
        elif row.not_before <= now:
            row.enqueued_at = now
        rows.append(row)
    created = Delivery.objects.bulk_create(rows)
    due = [d.pk for d in created if d.enqueued_at is not None]
    if due:
        transaction.on_commit(lambda: enqueue(due))
    return created


def enqueue(delivery_ids: list[int]) -> None:
    """Hand deliveries to the workers. If the broker is down they stay queued in the table,
    and the beat tick enqueues them again (deliveries_requeue_due)."""
    from .tasks import deliver_many

    # One task per handful: a broker message costs more than sending an inbox row.
    for start in range(0, len(delivery_ids), ENQUEUE_CHUNK):
        chunk = delivery_ids[start : start + ENQUEUE_CHUNK]
        try:
            deliver_many.delay(chunk)
        except Exception:
            logger.exception("enqueue of deliveries %s failed; the outbox scan will retry them", chunk)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not a secret)


def delivery_send(*, delivery_id: int) -> Delivery | None:
    """Send one delivery once, if it is still queued and due; record the attempt and its outcome."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("recipient", "account")
            .filter(pk=delivery_id, status=DeliveryStatus.QUEUED, not_before__lte=now)
            .first()
        )
        if delivery is None:
            return None
        account = delivery.account
        if account is not None and account.rate_limit_per_minute:
            wait = take(f"account:{account.pk}", per_minute=account.rate_limit_per_minute)
            if wait > 0:
                # Over the account's limit: back into the outbox until a token is free; never dropped.
                delivery.not_before = now + timedelta(seconds=wait)
                delivery.enqueued_at = None
                delivery.save(update_fields=["not_before", "enqueued_at", "updated_at"])
                return None
        delivery.status = DeliveryStatus.SENDING
        delivery.attempt_count += 1  # the row is locked: no one else can count
        delivery.save(update_fields=["status", "attempt_count", "updated_at"])

    started_at = timezone.now()
    t0 = time.monotonic()
    backend = backend_for(delivery.channel)
    if backend is None:
        result = DeliveryResult(
            AttemptOutcome.SKIPPED,
            "channel_not_implemented",
            f"No provider backend for the channel {delivery.channel} yet.",
        )
    else:
        try:
            result = backend.send(delivery)
        except Exception as err:  # a bug of ours, not the provider's answer: keep it and retry
            logger.exception("delivery %s: backend %s raised", delivery.pk, type(backend).__name__)
            result = DeliveryResult(AttemptOutcome.TRANSIENT, "internal_error", repr(err))
    duration_ms = int((time.monotonic() - t0) * 1000)
    return _record(delivery, result, started_at=started_at, duration_ms=duration_ms)


def _record(delivery: Delivery, result: DeliveryResult, *, started_at, duration_ms: int) -> Delivery:
    now = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempt_count,
            started_at=started_at,
            duration_ms=duration_ms,
            outcome=result.outcome,
            error_code=result.code,
            error_message=result.message,
            raw_response=result.raw or None,
        )
        delivery.last_error_code = "" if result.outcome == AttemptOutcome.SENT else result.code
        delivery.last_error_message = "" if result.outcome == AttemptOutcome.SENT else result.message
        retryable = result.outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.TOKEN_EXPIRED)
        max_attempts = MAX_ATTEMPTS.get(delivery.channel, DEFAULT_MAX_ATTEMPTS)
        if result.outcome == AttemptOutcome.SENT:
            delivery.status = DeliveryStatus.SENT
            delivery.provider_message_id = result.provider_message_id
        elif result.outcome == AttemptOutcome.SKIPPED:
            delivery.status = DeliveryStatus.SKIPPED
        elif retryable and delivery.attempt_count < max_attempts:
            delivery.status = DeliveryStatus.QUEUED
            delivery.not_before = now + timedelta(seconds=backoff_seconds(delivery.attempt_count))
            delivery.enqueued_at = None
        else:
            delivery.status = DeliveryStatus.FAILED
        if delivery.status != DeliveryStatus.QUEUED:
            delivery.finished_at = now
        delivery.save(
            update_fields=[
                "status",
                "last_error_code",
                "last_error_message",
                "provider_message_id",
                "not_before",
                "enqueued_at",
                "finished_at",
                "updated_at",
            ]
        )
    logger.info(
        "delivery %s %s to %s: %s %s",
        delivery.pk,
        delivery.channel,
        masked_address(delivery.channel, delivery.address),
        delivery.status,
        result.code,
    )
    return delivery


def deliveries_requeue_due(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Enqueue queued deliveries whose time has come and that no worker holds: retries that are
    due, and those whose first enqueue was lost. Also frees sends stuck by a dead worker."""
    now = now or timezone.now()
    limit = limit or settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
    lost_before = now - timedelta(seconds=settings.NOTIFYCENTER["REQUEUE_AFTER_SECONDS"])
    with transaction.atomic():
        Delivery.objects.filter(status=DeliveryStatus.SENDING, updated_at__lt=now - STUCK_SENDING_AFTER).update(
            status=DeliveryStatus.QUEUED, enqueued_at=None, updated_at=now
        )
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.QUEUED, not_before__lte=now)
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost_before))
            .order_by("not_before")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
            transaction.on_commit(lambda: enqueue(ids))
    return len(ids)


def deliveries_cancel(*, message_refs: list[int], reason: str) -> int:
    """Cancel the deliveries of these messages that have not gone out yet."""
    return Delivery.objects.filter(message_ref__in=message_refs, status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.CANCELLED, last_error_code=reason, finished_at=timezone.now()
    )


RECIPIENT_FIELDS = (
    "name",
    "phone",
    "wechat_mini_openid",
    "wechat_oa_openid",
    "wechat_unionid",
    "push_registration_ids",
    "wecom_userid",
    "locale",
)


def recipient_put(*, audience: str, external_id: str, **fields) -> tuple[Recipient, bool]:
    """Create or update one person's addresses; fields not given are left as they are."""
    unknown = set(fields) - set(RECIPIENT_FIELDS)
    if unknown:
        raise ValueError(f"unknown recipient fields: {sorted(unknown)}")
    return Recipient.objects.update_or_create(audience=audience, external_id=external_id, defaults=fields)


def recipients_resolve(*, named: dict[str, list]) -> dict[tuple[str, str], Recipient]:
    """The recipients an event names, per audience: plain external ids, or objects carrying
    addresses inline (`{"id": "p-42", "phone": ...}`) that update the directory. Unknown ids are
    created bare, so the inbox still reaches them and channels without an address skip with
    `no_address`. One read for all audiences; keyed by (audience, external id)."""
    inline: dict[tuple[str, str], dict] = {}
    wanted: list[tuple[str, str]] = []
    for audience, entries in named.items():
        for entry in entries:
            if isinstance(entry, dict):
                key = (audience, str(entry["id"]))
                inline[key] = {k: v for k, v in entry.items() if k in RECIPIENT_FIELDS}
            else:
                key = (audience, str(entry))
            if key not in wanted:
                wanted.append(key)
    if not wanted:
        return {}

    def read(keys):
        match = Q()
        for audience in {a for a, _ in keys}:
            match |= Q(audience=audience, external_id__in=[i for a, i in keys if a == audience])
        return {(r.audience, r.external_id): r for r in Recipient.objects.filter(match)}

    known = read(wanted)
    missing = [k for k in wanted if k not in known]
    if missing:
        # Concurrent events may name the same new person: insert what is missing, ignore the
        # rows another transaction got in first, and read them all back.
        Recipient.objects.bulk_create(
            [Recipient(audience=a, external_id=i, **inline.get((a, i), {})) for a, i in missing],
            ignore_conflicts=True,
        )
        known.update(read(missing))
    for key, fields in inline.items():
        recipient = known[key]
        if any(getattr(recipient, k) != v for k, v in fields.items()):
            for name, value in fields.items():
                setattr(recipient, name, value)
            recipient.save(update_fields=[*fields, "updated_at"])
    return known


def consents_grant(*, audience: str, external_id: str, template_ids: list[str]) -> Recipient:
    """Add one mini-program subscribe consent per template id accepted (WeChat grants one send each)."""
    with transaction.atomic():
        recipient = recipients_resolve(named={audience: [external_id]})[(audience, external_id)]
        for template_id in template_ids:
            consent, created = SubscribeConsent.objects.select_for_update().get_or_create(
                recipient=recipient, template_id=template_id, defaults={"remaining": 1}
            )
            if not created:
                SubscribeConsent.objects.filter(pk=consent.pk).update(remaining=F("remaining") + 1)
    return recipient
