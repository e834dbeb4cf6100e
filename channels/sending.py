"""The delivery engine: claim, write the attempt, call, settle. Nothing lost, nothing sent twice.

1. A claim (queued → sending) holds a lease: a `claim` token and `lease_until`, a little longer
   than the provider calls of one send can take (PROVIDER_TIMEOUT). Chunks are claimed together;
   each attempt opened in a chunk extends the lease of the members still waiting their turn.
2. Before a request leaves, its attempt (outcome `pending`, with the provider's idempotency key)
   is committed. After the answer, attempt and delivery settle in one transaction, only while the
   claim is still ours.
3. The outbox scan frees claims whose lease ran out (a dead worker): a delivery with no open
   attempt is queued again; one with an open attempt, or whose call timed out, is `unknown` and is
   reconciled per channel (channels/reconcile.py), never blindly resent.
4. Local backends (the station inbox) run inside the claiming transaction, in bulk: a crash rolls
   everything back to queued, so nothing is half done.
"""

import logging
import random
import secrets
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .addresses import deliveries_fill_addresses
from .models import AttemptKind, AttemptOutcome, ChangeSource, Channel, Delivery, DeliveryAttempt, DeliveryStatus
from .otp import otp_release_for
from .providers import Backend, DeliveryResult, backend_for
from .ratelimit import take_for_account
from .routing import reroute_disabled, route_on_result
from .services import enqueue, enqueue_reconcile, masked_address
from .timeline import status_changes_record

logger = logging.getLogger(__name__)

# Tries per channel before a transient failure becomes final.
MAX_ATTEMPTS = {Channel.INBOX: 5, Channel.SMS: 4}
DEFAULT_MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600
FINAL = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.DEDUPLICATED,
    DeliveryStatus.CANCELLED,
)


def lease() -> timedelta:
    """How long a claim holds: a send is at most two provider calls (a token, then the send), plus
    a margin for our own database writes."""
    connect, read = settings.PROVIDER_TIMEOUT
    return timedelta(seconds=2 * (connect + read) + 4)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not a secret)


def deliveries_send(*, delivery_ids: list[int], remote_send=None) -> None:
    """Send each of these deliveries that is still queued and due; local ones in bulk; the
    remote ones together through `remote_send` (channels/flight.py's event loop) when given,
    else one after the other here."""
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
        _send_locally(backend_for(channel), ids, channel)
    if remote and remote_send is not None:
        remote_send(remote)
    elif remote:
        claim, rows = _claim(remote)
        chunk = tuple(d.pk for d in rows)
        for delivery in rows:
            _send_claimed(delivery, claim, chunk)


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
        reroute_disabled([delivery])
        account = delivery.account
        if account is not None and account.rate_limit_per_minute:
            wait = take_for_account(account)
            if wait > 0:
                # Over the account's limit: back into the outbox until a token is free; never dropped.
                delivery.not_before = now + timedelta(seconds=wait)
                delivery.enqueued_at = None
                delivery.save(update_fields=["not_before", "enqueued_at", "updated_at"])
                return None
        claim = secrets.token_hex(8)
        delivery.status, delivery.claim, delivery.lease_until = DeliveryStatus.SENDING, claim, now + lease()
        delivery.save(update_fields=["status", "claim", "lease_until", "updated_at"])
    deliveries_fill_addresses([delivery])
    if backend_for(delivery.channel) is None:
        _settle_claimed(delivery, claim, None, _not_implemented(delivery.channel), now, 0)
        return delivery
    _send_claimed(delivery, claim)
    return delivery


def _claim(ids: list[int]) -> tuple[str, list[Delivery]]:
    """Claim the queued, due ones among these ids for this worker, under one lease."""
    now = timezone.now()
    claim = secrets.token_hex(8)
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("recipient", "account")
            .filter(pk__in=ids, status=DeliveryStatus.QUEUED, not_before__lte=now)
            .order_by("pk")
        )
        if rows:
            Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
                status=DeliveryStatus.SENDING, claim=claim, lease_until=now + lease(), updated_at=now
            )
    for d in rows:
        d.status, d.claim = DeliveryStatus.SENDING, claim
    reroute_disabled(rows)
    deliveries_fill_addresses(rows)
    return claim, rows


def _send_claimed(delivery: Delivery, claim: str, chunk: tuple[int, ...] = ()) -> None:
    backend = backend_for(delivery.channel)
    started_at = timezone.now()
    t0 = time.monotonic()
    prepared = _call(backend.prepare, delivery)
    attempt = None
    if prepared is None:
        attempt = _open_attempt(delivery, claim, backend.provider_key(delivery), started_at, chunk)
        if attempt is None:
            return  # the claim was lost (our lease ran out and the scan took the row back)
        result = _call(backend.send, delivery)
    else:
        result = prepared
    _settle_claimed(delivery, claim, attempt, result, started_at, int((time.monotonic() - t0) * 1000))


def _open_attempt(
    delivery: Delivery, claim: str, provider_key: str, started_at: datetime, chunk: tuple[int, ...] = ()
) -> DeliveryAttempt | None:
    """Commit the attempt before the request leaves, if the claim is still ours; the same
    statement extends the lease of the chunk's members still waiting their turn."""
    ids = sorted({delivery.pk, *chunk})
    marks = ", ".join(["%s"] * len(ids))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Delivery._meta.db_table} SET lease_until = %s, "  # noqa: S608 (names are ours)
                "attempt_count = attempt_count + (CASE WHEN id = %s THEN 1 ELSE 0 END) "
                f"WHERE id IN ({marks}) AND claim = %s AND status = %s RETURNING id, attempt_count",
                [timezone.now() + lease(), delivery.pk, *ids, claim, DeliveryStatus.SENDING],
            )
            counts = dict(cursor.fetchall())
        if delivery.pk not in counts:
            return None
        delivery.attempt_count = counts[delivery.pk]
        return DeliveryAttempt.objects.create(
            delivery=delivery,
            number=_next_number(delivery.pk),
            kind=AttemptKind.SEND,
            provider_key=provider_key,
            started_at=started_at,
            outcome=AttemptOutcome.PENDING,
        )


def _next_number(delivery_id: int):
    """The next attempt number, computed inside the INSERT (one round trip, not two)."""
    return Coalesce(
        Subquery(
            DeliveryAttempt.objects.filter(delivery_id=delivery_id)
            .order_by()
            .values("delivery_id")
            .annotate(top=Max("number"))
            .values("top")
        ),
        0,
    ) + Value(1)


def _settle_claimed(
    delivery: Delivery, claim: str, attempt: DeliveryAttempt | None, result: DeliveryResult, started_at, duration_ms
) -> None:
    """Record the answer, if the row is still ours: claimed by us, or (our lease ran out while we
    waited) turned unknown by the scan and not yet reconciled: then this answer is the truth."""
    now = timezone.now()
    with transaction.atomic():
        current = (
            Delivery.objects.select_for_update()
            .filter(pk=delivery.pk)
            .values("claim", "status", "finished_at", "attempt_count")
            .first()
        )
        ours = current is not None and (
            current["claim"] == claim
            or (current["status"] == DeliveryStatus.UNKNOWN and current["finished_at"] is None and not current["claim"])
        )
        if not ours:
            logger.warning("delivery %s: an answer came after the row was taken back: %s", delivery.pk, result.code)
            if attempt is not None:
                DeliveryAttempt.objects.filter(pk=attempt.pk).update(
                    error_message=f"late answer, not applied: {result.outcome} {result.code} {result.message}"[:2000],
                    raw_response=result.raw or None,
                )
            return
        # A try that ended before its attempt was opened (prepare failed) still counts as one.
        delivery.attempt_count = current["attempt_count"] + (1 if attempt is None else 0)
        apply_result(delivery, result, now=now, started_at=started_at)
        if attempt is None:
            attempt = DeliveryAttempt(
                delivery=delivery, number=_next_number(delivery.pk), kind=AttemptKind.SEND, started_at=started_at
            )
        attempt.outcome = result.outcome
        attempt.error_code = result.code[:64]
        attempt.error_message = result.message
        attempt.raw_response = result.raw or None
        attempt.provider_message_id = result.provider_message_id[:128]
        attempt.duration_ms = duration_ms
        attempt.settled_at = now
        if attempt.pk is None:
            attempt.save()
        else:  # its number was computed by the INSERT: leave it alone
            attempt.save(update_fields=ATTEMPT_SETTLED_FIELDS)
        delivery.save(update_fields=SETTLED_FIELDS)
        status_changes_record(
            changes=[(delivery.pk, delivery.status)], at=now, source=ChangeSource.SEND, code=result.code
        )
    _log(delivery, result)


# Local rows written in one transaction: a task's own and, up to this many, others already due
# (single events make a task each; the first task to run takes its neighbours' rows along, and
# the next one takes the rows after those, even when its own were taken already: the queue's
# order is the rows' order, so waiting for a task whose rows are still there would be one grab
# per LOCAL_BATCH tasks, measured in bench/ingest.py).
LOCAL_BATCH = 200


def _send_locally(backend: Backend, ids: list[int], channel: str = "") -> None:
    now = timezone.now()
    # The backend's rows that every chunk locks (the inbox's counters) are written last, after
    # the bookkeeping below: their locks are held to the commit only.
    with transaction.atomic(), backend.writes_last():
        due = Delivery.objects.select_for_update(of=("self",), skip_locked=True).select_related("recipient")
        rows = list(due.filter(pk__in=ids, status=DeliveryStatus.QUEUED, not_before__lte=now).order_by("pk"))
        if channel and len(rows) < LOCAL_BATCH:
            rows += list(
                due.filter(channel=channel, status=DeliveryStatus.QUEUED, not_before__lte=now)
                .exclude(pk__in=[d.pk for d in rows])
                .order_by("not_before")[: LOCAL_BATCH - len(rows)]
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
            apply_result(delivery, result, now=settled_at, started_at=now)
            attempts.append(
                DeliveryAttempt(
                    delivery=delivery,
                    number=delivery.attempt_count,
                    started_at=now,
                    settled_at=settled_at,
                    duration_ms=duration_ms,
                    outcome=result.outcome,
                    error_code=result.code,
                    error_message=result.message,
                    raw_response=result.raw or None,
                    provider_message_id=result.provider_message_id,
                )
            )
            # Rows settled alike share one UPDATE (bulk_update's CASE per row was most of a fan-out).
            groups.setdefault(tuple(getattr(delivery, f) for f in LOCAL_FIELDS), []).append(delivery.pk)
        DeliveryAttempt.objects.bulk_create(attempts, batch_size=1000)
        status_changes_record(changes=[(d.pk, d.status) for d in rows], at=settled_at, source=ChangeSource.SEND)
        for values, pks in groups.items():
            Delivery.objects.filter(pk__in=pks).update(
                attempt_count=F("attempt_count") + 1, **dict(zip(LOCAL_FIELDS, values, strict=True))
            )


SETTLED_FIELDS = [
    "status",
    "attempt_count",
    "claim",
    "lease_until",
    "duplicate_of",
    "last_error_code",
    "last_error_message",
    "provider_message_id",
    "not_before",
    "enqueued_at",
    "finished_at",
    "updated_at",
]
ATTEMPT_SETTLED_FIELDS = [
    "outcome",
    "error_code",
    "error_message",
    "raw_response",
    "provider_message_id",
    "duration_ms",
    "settled_at",
]
LOCAL_FIELDS = [f for f in SETTLED_FIELDS if f not in ("attempt_count", "duplicate_of")]


def apply_result(delivery: Delivery, result: DeliveryResult, *, now, started_at) -> None:
    """A result's effect on the delivery (not saved): its status, error, next try, and the claim
    given up. Shared by sends and by reconciliation."""
    outcome = result.outcome
    delivery.claim, delivery.lease_until = "", None
    delivery.last_error_code = "" if outcome == AttemptOutcome.SENT else result.code[:64]
    delivery.last_error_message = "" if outcome == AttemptOutcome.SENT else result.message
    if outcome == AttemptOutcome.DEDUPLICATED and result.duplicate_key in ("", delivery.idempotency_key):
        outcome = AttemptOutcome.SENT  # it repeats our own earlier attempt: that one went out
    retryable = outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.TOKEN_EXPIRED)
    if outcome == AttemptOutcome.SENT:
        delivery.status = DeliveryStatus.SENT
        delivery.provider_message_id = result.provider_message_id[:128] or delivery.provider_message_id
    elif outcome == AttemptOutcome.DEDUPLICATED:
        delivery.status = DeliveryStatus.DEDUPLICATED
        delivery.duplicate_of = Delivery.objects.filter(idempotency_key=result.duplicate_key).first()
    elif outcome == AttemptOutcome.SKIPPED:
        delivery.status = DeliveryStatus.SKIPPED
    elif outcome == AttemptOutcome.UNKNOWN:
        # Not final: reconciliation looks at it once a request still in flight has surely landed.
        delivery.status = DeliveryStatus.UNKNOWN
        delivery.not_before = started_at + timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
        delivery.enqueued_at = None
    elif retryable and delivery.attempt_count < MAX_ATTEMPTS.get(delivery.channel, DEFAULT_MAX_ATTEMPTS):
        delivery.status = DeliveryStatus.QUEUED
        delivery.not_before = max(
            result.retry_at or now, now + timedelta(seconds=backoff_seconds(delivery.attempt_count))
        )
        delivery.enqueued_at = None
    else:
        delivery.status = DeliveryStatus.FAILED
    route_on_result(delivery, result, now=now)  # provider failover (channels/routing.py)
    final = delivery.status in FINAL
    delivery.finished_at = now if final else None
    delivery.updated_at = now
    if final:
        otp_release_for(delivery)  # a code's sealed copy lives no longer than its delivery


def _call(fn, delivery: Delivery) -> DeliveryResult | None:
    try:
        return fn(delivery)
    except Exception as err:  # a bug of ours, not the provider's answer: keep it and retry
        logger.exception("delivery %s: %s raised", delivery.pk, getattr(fn, "__qualname__", fn))
        return DeliveryResult(AttemptOutcome.TRANSIENT, "internal_error", repr(err))


def _not_implemented(channel: str) -> DeliveryResult:
    return DeliveryResult(
        AttemptOutcome.SKIPPED, "channel_not_implemented", f"No provider backend for the channel {channel} yet."
    )


def _log(delivery: Delivery, result: DeliveryResult) -> None:
    if not logger.isEnabledFor(logging.INFO):  # the address is masked for the line: not for nothing
        return
    logger.info(
        "delivery %s %s to %s: %s %s",
        delivery.pk,
        delivery.channel,
        masked_address(delivery.channel, delivery.address),
        delivery.status,
        result.code,
    )


def deliveries_requeue_due(*, now: datetime | None = None, limit: int | None = None) -> int:
    """The outbox scan: free claims whose lease ran out (an open attempt makes the delivery
    unknown; none, queued again), hand unknown outcomes to reconciliation, and enqueue queued
    deliveries whose time has come and that no worker holds (retries, lost enqueues)."""
    now = now or timezone.now()
    limit = limit or settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
    lost_before = now - timedelta(seconds=settings.NOTIFYCENTER["REQUEUE_AFTER_SECONDS"])
    with transaction.atomic():
        expired = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.SENDING, lease_until__lt=now)
            .values_list("pk", flat=True)[:limit]
        )
        if expired:
            _free_expired(expired, now)
        reconcile = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.UNKNOWN, finished_at__isnull=True, not_before__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost_before))
            .values_list("pk", flat=True)[:limit]
        )
        if reconcile:
            Delivery.objects.filter(pk__in=reconcile).update(enqueued_at=now)
            transaction.on_commit(lambda: enqueue_reconcile(reconcile))
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


def _free_expired(ids: list[int], now) -> None:
    in_flight = set(
        DeliveryAttempt.objects.filter(delivery_id__in=ids, outcome=AttemptOutcome.PENDING).values_list(
            "delivery_id", flat=True
        )
    )
    if in_flight:
        words = "The worker ended (or stalled) while waiting for the provider's answer; the outcome is unknown."
        DeliveryAttempt.objects.filter(delivery_id__in=in_flight, outcome=AttemptOutcome.PENDING).update(
            outcome=AttemptOutcome.UNKNOWN, error_code="worker_lost", error_message=words, settled_at=now
        )
        Delivery.objects.filter(pk__in=in_flight).update(
            status=DeliveryStatus.UNKNOWN,
            claim="",
            lease_until=None,
            enqueued_at=None,
            not_before=now,  # the lease outlasted any request still in flight
            last_error_code="worker_lost",
            last_error_message=words,
            updated_at=now,
        )
    idle = [pk for pk in ids if pk not in in_flight]
    status_changes_record(
        changes=[(pk, DeliveryStatus.UNKNOWN if pk in in_flight else DeliveryStatus.QUEUED) for pk in ids],
        at=now,
        source=ChangeSource.SCAN,
        code="worker_lost",
    )
    if idle:
        # Claimed but never called: simply queued again, at once.
        Delivery.objects.filter(pk__in=idle).update(
            status=DeliveryStatus.QUEUED, claim="", lease_until=None, enqueued_at=None, not_before=now, updated_at=now
        )
    logger.warning("outbox scan: %d expired claims, %d with a call in flight", len(ids), len(in_flight))
