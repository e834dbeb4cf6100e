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
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone

from .models import QUIET, Delivery, DeliveryStatus, DeliveryStatusChange
from .rows import values_insert

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
    *,
    changes: Iterable[tuple[int, str]],
    at: datetime,
    source: str,
    code: str = "",
    detail: str = "",
    codes: dict[int, str] | None = None,
) -> None:
    """Write one timeline row per (delivery id, new status), in the caller's transaction, in one
    INSERT; `codes` gives a code per delivery where they differ (a chunk's answers). A QUIET
    change is written published, and announced to nobody."""
    codes = codes or {}
    rows = [
        {
            "delivery_id": pk,
            "status": status,
            "at": at,
            "source": source,
            "code": codes.get(pk, code)[:64],
            "detail": detail[:500],
            "published_at": at if status in QUIET else None,
        }
        for pk, status in changes
    ]
    if rows:
        values_insert(DeliveryStatusChange, rows)
        if any(row["published_at"] is None for row in rows):
            transaction.on_commit(_announce)


@dataclass(frozen=True)
class Report:
    """Something reported after `sent` about one delivery: by a provider, the inbox, a click."""

    delivery_id: int
    status: str
    at: datetime | None
    source: str
    code: str = ""
    detail: str = ""


def delivery_progress(
    *, delivery_id: int, status: str, at: datetime | None, source: str, code: str = "", detail: str = ""
) -> str:
    """Apply one report after `sent` (delivered, undelivered, read, clicked) to one delivery.
    Returns applied, duplicate, late (kept, the status is already further), early (still queued
    or sending: try again later) or gone (no such delivery, or one that never went out)."""
    (outcome,) = deliveries_progress(reports=[Report(delivery_id, status, at, source, code, detail)])
    return outcome


def deliveries_progress(*, reports: list[Report]) -> list[str]:
    """The same for many reports in one transaction (a provider's batch): the deliveries locked
    in id order, their timelines read once, the rows written in bulk. Outcomes in report order."""
    now = timezone.now()
    with transaction.atomic():
        ids = sorted({r.delivery_id for r in reports})
        state = {
            pk: status
            for pk, status in Delivery.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", "status")
        }
        seen = set(
            DeliveryStatusChange.objects.filter(delivery_id__in=ids, status__in=list(PROGRESS)).values_list(
                "delivery_id", "status"
            )
        )
        rows: list[DeliveryStatusChange] = []
        settled: set[int] = set()  # unknown outcomes a report proves were sent
        errors: dict[int, tuple[str, str]] = {}  # (code, words) an undelivered report leaves
        outcomes = []
        for r in reports:
            current = state.get(r.delivery_id)
            if current is None:
                outcomes.append("gone")
                continue
            if current in WAITING:
                outcomes.append("early")
                continue
            if (r.delivery_id, r.status) in seen:
                outcomes.append("duplicate")
                continue
            if current == DeliveryStatus.UNKNOWN:
                rows.append(
                    _row(r.delivery_id, DeliveryStatus.SENT, now, r.source, detail="a receipt proves it was sent")
                )
                settled.add(r.delivery_id)
                current = state[r.delivery_id] = DeliveryStatus.SENT
            if current not in PROGRESS:
                outcomes.append("gone")  # failed, skipped, cancelled, deduplicated: it never went out
                continue
            forward = PROGRESS[r.status] > PROGRESS[current]
            # A late report is kept on the timeline with its own time, but not announced.
            rows.append(_row(r.delivery_id, r.status, r.at or now, r.source, r.code, r.detail, forward, now))
            seen.add((r.delivery_id, r.status))
            if forward:
                state[r.delivery_id] = r.status
                if r.status == DeliveryStatus.UNDELIVERED or current == DeliveryStatus.UNDELIVERED:
                    # The provider's code and words on the delivery itself (the console's list
                    # shows them), cleared again by a later delivered.
                    errors[r.delivery_id] = (r.code, r.detail) if r.status == DeliveryStatus.UNDELIVERED else ("", "")
            outcomes.append("applied" if forward else "late")
        DeliveryStatusChange.objects.bulk_create(rows, batch_size=2000)
        moved: dict[str, list[int]] = {}
        for r, outcome in zip(reports, outcomes, strict=True):
            if outcome == "applied" or r.delivery_id in settled:
                moved.setdefault(state[r.delivery_id], []).append(r.delivery_id)
        for status, pks in moved.items():
            Delivery.objects.filter(pk__in=[pk for pk in pks if pk not in settled]).update(
                status=status, updated_at=now
            )
            from_unknown = [pk for pk in pks if pk in settled]
            if from_unknown:
                Delivery.objects.filter(pk__in=from_unknown).update(
                    status=status,
                    finished_at=Coalesce("finished_at", Value(now)),
                    claim="",
                    lease_until=None,
                    last_error_code="",
                    last_error_message="",
                    updated_at=now,
                )
        by_error: dict[tuple[str, str], list[int]] = {}
        for pk, error in errors.items():
            by_error.setdefault(error, []).append(pk)
        for (code, words), pks in by_error.items():  # one statement per distinct answer, not per delivery
            Delivery.objects.filter(pk__in=pks).update(last_error_code=code[:64], last_error_message=words)
        if rows:
            transaction.on_commit(_announce)
    return outcomes


def _row(delivery_id, status, at, source, code="", detail="", applied=True, published_at=None) -> DeliveryStatusChange:
    return DeliveryStatusChange(
        delivery_id=delivery_id,
        status=status,
        at=at,
        source=source,
        applied=applied,
        code=code[:64],
        detail=detail[:500],
        published_at=None if applied else published_at,
    )
