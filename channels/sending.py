"""The delivery engine: send queued deliveries, keep every attempt, retry, settle.

A provider backend is called outside any transaction (a slow provider must not hold row locks):
claim the row (queued → sending), call, record the attempt and the outcome. A backend that only
writes to our own database (`local = True`, the station inbox) runs inside the claiming
transaction instead, many deliveries at once with bulk writes: a crash rolls everything back to
queued, so nothing is half done.
"""

import logging
import random
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import AttemptOutcome, Channel, Delivery, DeliveryAttempt, DeliveryStatus
from .providers import Backend, DeliveryResult, backend_for
from .ratelimit import take
from .services import enqueue, masked_address

logger = logging.getLogger(__name__)

# Tries per channel before a transient failure becomes final.
MAX_ATTEMPTS = {Channel.INBOX: 5, Channel.SMS: 4}
DEFAULT_MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600
# A delivery left in "sending" this long belongs to a worker that died mid-send.
STUCK_SENDING_AFTER = timedelta(minutes=5)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not a secret)


def deliveries_send(*, delivery_ids: list[int]) -> None:
    """Send each of these deliveries that is still queued and due; local ones in bulk."""
    rows = Delivery.objects.filter(pk__in=delivery_ids).values_list("pk", "channel", "account__rate_limit_per_minute")
    found = {pk: (channel, limited) for pk, channel, limited in rows}
    local: dict[str, list[int]] = {}
    remote: list[int] = []
    for pk in delivery_ids:
        if pk not in found:
            continue
        channel, rate_limited = found[pk]
        backend = backend_for(channel)
        if rate_limited or backend is None:
            delivery_send(delivery_id=pk)  # one at a time: each takes a token from the bucket
        elif backend.local:
            local.setdefault(channel, []).append(pk)
        else:
            remote.append(pk)
    for channel, ids in local.items():
        _send_locally(backend_for(channel), ids)
    if len(remote) == 1:
        delivery_send(delivery_id=remote[0])
    elif remote:
        _send_remote(remote)


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
    result = _call(backend, delivery) if backend is not None else _not_implemented(delivery.channel)
    duration_ms = int((time.monotonic() - t0) * 1000)
    with transaction.atomic():
        attempt = _settle(delivery, result, started_at=started_at, duration_ms=duration_ms, now=timezone.now())
        attempt.save()
        delivery.save(update_fields=SETTLED_FIELDS)
    _log(delivery, result)
    return delivery


def _send_remote(ids: list[int]) -> None:
    """A chunk of provider sends: one transaction claims them all, the calls go out one after
    another outside any transaction (the worker pool gives the concurrency), and one transaction
    records every attempt and outcome. Three round trips to the database per chunk instead of
    four per delivery."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("recipient", "account")
            .filter(pk__in=ids, status=DeliveryStatus.QUEUED, not_before__lte=now)
            .order_by("pk")
        )
        if not rows:
            return
        Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
            status=DeliveryStatus.SENDING, attempt_count=F("attempt_count") + 1, updated_at=now
        )
    attempts = []
    for delivery in rows:
        delivery.attempt_count += 1
        started_at = timezone.now()
        t0 = time.monotonic()
        result = _call(backend_for(delivery.channel), delivery)
        duration_ms = int((time.monotonic() - t0) * 1000)
        attempts.append((delivery, result, started_at, duration_ms))
    settled_at = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.bulk_create(
            [_settle(d, r, started_at=at, duration_ms=ms, now=settled_at) for d, r, at, ms in attempts]
        )
        _update_settled(rows)
    for delivery, result, _, _ in attempts:
        _log(delivery, result)


def _send_locally(backend: Backend, ids: list[int]) -> None:
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("recipient")
            .filter(pk__in=ids, status=DeliveryStatus.QUEUED, not_before__lte=now)
            .order_by("pk")
        )
        if not rows:
            return
        t0 = time.monotonic()
        try:
            results = backend.send_many(rows)
        except Exception as err:  # a bug of ours: keep it on every row and retry later
            logger.exception("local backend %s raised", type(backend).__name__)
            results = [DeliveryResult(AttemptOutcome.TRANSIENT, "internal_error", repr(err))] * len(rows)
        duration_ms = int((time.monotonic() - t0) * 1000 / len(rows))
        settled_at = timezone.now()
        attempts = []
        groups: dict[tuple, list[int]] = {}
        for delivery, result in zip(rows, results, strict=True):
            delivery.attempt_count += 1
            attempts.append(_settle(delivery, result, started_at=now, duration_ms=duration_ms, now=settled_at))
            # Rows settled alike share one UPDATE (bulk_update's CASE per row was most of a fan-out).
            groups.setdefault(tuple(getattr(delivery, f) for f in SETTLED_FIELDS), []).append(delivery.pk)
        DeliveryAttempt.objects.bulk_create(attempts, batch_size=1000)
        for values, pks in groups.items():
            Delivery.objects.filter(pk__in=pks).update(
                attempt_count=F("attempt_count") + 1, **dict(zip(SETTLED_FIELDS, values, strict=True))
            )


SETTLED_FIELDS = [
    "status",
    "last_error_code",
    "last_error_message",
    "provider_message_id",
    "not_before",
    "enqueued_at",
    "finished_at",
    "updated_at",
]


def _update_settled(rows: list[Delivery]) -> None:
    """Each row's own outcome in one statement. On PostgreSQL an UPDATE … FROM (VALUES …):
    Django's bulk_update builds a CASE per field and row, which cost more CPU than the sends."""
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_update(rows, SETTLED_FIELDS)
        return
    table = Delivery._meta.db_table
    times = {"not_before", "enqueued_at", "finished_at", "updated_at"}
    assignments = ", ".join(f"{f} = v.{f}{'::timestamptz' if f in times else ''}" for f in SETTLED_FIELDS)
    values = ", ".join(["(" + ", ".join(["%s"] * (len(SETTLED_FIELDS) + 1)) + ")"] * len(rows))
    params = [value for d in rows for value in (d.pk, *(getattr(d, f) for f in SETTLED_FIELDS))]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS d SET {assignments} "  # noqa: S608 (names are ours; values are parameters)
            f"FROM (VALUES {values}) AS v(id, {', '.join(SETTLED_FIELDS)}) WHERE d.id = v.id",
            params,
        )


def _call(backend: Backend, delivery: Delivery) -> DeliveryResult:
    try:
        return backend.send(delivery)
    except Exception as err:  # a bug of ours, not the provider's answer: keep it and retry
        logger.exception("delivery %s: backend %s raised", delivery.pk, type(backend).__name__)
        return DeliveryResult(AttemptOutcome.TRANSIENT, "internal_error", repr(err))


def _not_implemented(channel: str) -> DeliveryResult:
    return DeliveryResult(
        AttemptOutcome.SKIPPED, "channel_not_implemented", f"No provider backend for the channel {channel} yet."
    )


def _settle(delivery: Delivery, result: DeliveryResult, *, started_at, duration_ms: int, now) -> DeliveryAttempt:
    """Apply a result to the delivery (not saved) and return its attempt (not saved)."""
    sent = result.outcome == AttemptOutcome.SENT
    delivery.last_error_code = "" if sent else result.code
    delivery.last_error_message = "" if sent else result.message
    retryable = result.outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.TOKEN_EXPIRED)
    if sent:
        delivery.status = DeliveryStatus.SENT
        delivery.provider_message_id = result.provider_message_id
    elif result.outcome == AttemptOutcome.SKIPPED:
        delivery.status = DeliveryStatus.SKIPPED
    elif retryable and delivery.attempt_count < MAX_ATTEMPTS.get(delivery.channel, DEFAULT_MAX_ATTEMPTS):
        delivery.status = DeliveryStatus.QUEUED
        delivery.not_before = now + timedelta(seconds=backoff_seconds(delivery.attempt_count))
        delivery.enqueued_at = None
    else:
        delivery.status = DeliveryStatus.FAILED
    delivery.finished_at = None if delivery.status == DeliveryStatus.QUEUED else now
    delivery.updated_at = now
    return DeliveryAttempt(
        delivery=delivery,
        number=delivery.attempt_count,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome=result.outcome,
        error_code=result.code,
        error_message=result.message,
        raw_response=result.raw or None,
    )


def _log(delivery: Delivery, result: DeliveryResult) -> None:
    logger.info(
        "delivery %s %s to %s: %s %s",
        delivery.pk,
        delivery.channel,
        masked_address(delivery.channel, delivery.address),
        delivery.status,
        result.code,
    )


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
        due = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.QUEUED, not_before__lte=now)
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost_before))
            .order_by("not_before")
            .values_list("pk", "channel")[:limit]
        )
        if due:
            Delivery.objects.filter(pk__in=[pk for pk, _ in due]).update(enqueued_at=now)
            transaction.on_commit(lambda: enqueue(due))
    return len(due)
