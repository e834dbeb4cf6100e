"""A delivery's timeline: every status change is a row, written in the transaction that made it.

1. The engine (sending, reconcile, services) records its changes with `status_changes_record`,
   one call per place, in bulk where the engine is bulk.
2. After `sent`, what providers and people report (receipts, inbox reads, clicks) goes through
   `delivery_progress`: statuses only move forward (sent → undelivered → delivered → read →
   clicked); a report behind the current status is kept as a row (`applied` false) with its own
   time, a repeat of a status already on the timeline is a duplicate, and a report for a delivery
   still queued or sending waits (`early`). A report for an `unknown` delivery is evidence that it
   was sent: it settles it as sent first, so reconciliation does not ask again.
3. The rows are also an outbox: `status_changes_committed` fires after commit, and the project
   layer (notifycenter/webhooks.py) publishes the rows it has not yet published; its beat scan
   picks up whatever a dead process left behind.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from .models import Delivery, DeliveryStatus, DeliveryStatusChange

# Sent (no arguments) after a transaction that wrote status changes commits.
status_changes_committed = Signal()

# How far a delivery has come after the provider took it; higher never goes back to lower.
PROGRESS = {
    DeliveryStatus.SENT: 1,
    DeliveryStatus.UNDELIVERED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
    DeliveryStatus.CLICKED: 5,
}
WAITING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


def _announce() -> None:
    status_changes_committed.send(sender=DeliveryStatusChange)


def status_changes_record(
    *, changes: Iterable[tuple[int, str]], at: datetime, source: str, code: str = "", detail: str = ""
) -> None:
    """Write one timeline row per (delivery id, new status), in the caller's transaction."""
    rows = [
        DeliveryStatusChange(delivery_id=pk, status=status, at=at, source=source, code=code[:64], detail=detail[:500])
        for pk, status in changes
    ]
    if rows:
        DeliveryStatusChange.objects.bulk_create(rows, batch_size=2000)
        transaction.on_commit(_announce)


def delivery_progress(
    *, delivery_id: int, status: str, at: datetime | None, source: str, code: str = "", detail: str = ""
) -> str:
    """Apply a report after `sent` (delivered, undelivered, read, clicked) to one delivery.
    Returns applied, duplicate, late (kept, the status is already further), early (still queued
    or sending: try again later) or gone (no such delivery, or one that never went out)."""
    now = timezone.now()
    at = at or now
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .filter(pk=delivery_id)
            .only("status", "finished_at", "claim", "provider_message_id")
            .first()
        )
        if delivery is None:
            return "gone"
        if delivery.status in WAITING:
            return "early"
        if DeliveryStatusChange.objects.filter(delivery_id=delivery_id, status=status).exists():
            return "duplicate"
        fields = {}
        if delivery.status == DeliveryStatus.UNKNOWN:
            # The provider reporting on it is proof it took it: settle as sent, reconciliation ends.
            status_changes_record(
                changes=[(delivery_id, DeliveryStatus.SENT)],
                at=now,
                source=source,
                detail="a receipt proves it was sent",
            )
            fields.update(
                status=DeliveryStatus.SENT, finished_at=delivery.finished_at or now, claim="", lease_until=None
            )
            fields.update(last_error_code="", last_error_message="")
            delivery.status = DeliveryStatus.SENT
        current = PROGRESS.get(delivery.status)
        if current is None:
            return "gone"  # failed, skipped, cancelled, deduplicated: it never reached anyone from us
        forward = PROGRESS[status] > current
        DeliveryStatusChange.objects.create(
            delivery_id=delivery_id,
            status=status,
            at=at,
            source=source,
            applied=forward,
            code=code[:64],
            detail=detail[:500],
            # A late report is kept on the timeline but not announced as a change.
            published_at=None if forward else now,
        )
        if forward:
            fields.update(status=status)
        if fields:
            Delivery.objects.filter(pk=delivery_id).update(updated_at=now, **fields)
        transaction.on_commit(_announce)
    return "applied" if forward else "late"


def deliveries_progress_many(*, delivery_ids: list[int], status: str, at: datetime, source: str) -> int:
    """The same, for many deliveries reported alike (inbox reads); returns how many moved."""
    moved = 0
    for pk in delivery_ids:
        moved += delivery_progress(delivery_id=pk, status=status, at=at, source=source) == "applied"
    return moved
