"""How long the center keeps what it was told, and one person's data on request (PIPL).

- `events_purge`: events older than EVENT_RETENTION_DAYS go with their messages, deliveries and
  attempts, a small batch per transaction, and with the follow-up enrollments they started once
  those have ended. An event is kept while it still has a reminder scheduled, a delivery
  waiting, or an enrollment it started still running.
- `person_export` / `person_erase`: everything about one person (directory entry, consents,
  messages, deliveries, inbox), and its erasure (`manage.py person`).
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels.retention import deliveries_purge, deliveries_unfinished, recipient_erase, recipient_export
from inbox.models import InboxMessage
from inbox.services import inbox_person_erase

from .models import EnrollmentStatus, Event, Message, MessageStatus, PlanEnrollment


def events_purge(*, older_than_days: int, batch_size: int = 500, max_batches: int | None = None) -> int:
    """Delete events received more than `older_than_days` ago, with everything they made; returns
    how many events went. 0 days or less keeps everything."""
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, batches, after = 0, 0, 0
    while max_batches is None or batches < max_batches:
        ids = list(
            Event.objects.filter(received_at__lt=cutoff, pk__gt=after)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        after = ids[-1]
        with transaction.atomic():
            keep = set(
                Message.objects.filter(event_id__in=ids, status=MessageStatus.SCHEDULED).values_list(
                    "event_id", flat=True
                )
            )
            keep |= set(
                PlanEnrollment.objects.filter(event_id__in=ids, status=EnrollmentStatus.ACTIVE).values_list(
                    "event_id", flat=True
                )
            )
            keep |= deliveries_unfinished(event_refs=ids)
            gone = [pk for pk in ids if pk not in keep]
            deliveries_purge(event_refs=gone)
            PlanEnrollment.objects.filter(event_id__in=gone).delete()  # ended: only its event held it
            Event.objects.filter(pk__in=gone).delete()
        deleted += len(gone)
        batches += 1
    return deleted


def person_export(*, audience: str, external_id: str) -> dict | None:
    """One person's data as the center holds it, or None when it holds none."""
    channels_part = recipient_export(audience=audience, external_id=external_id)
    inbox = InboxMessage.objects.filter(audience=audience, recipient_id=external_id).order_by("id")
    if channels_part is None and not inbox.exists():
        return None
    messages = Message.objects.filter(recipient__audience=audience, recipient__external_id=external_id).select_related(
        "event__scenario", "template"
    )
    return {
        **(channels_part or {"directory": None, "consents": {}, "deliveries": []}),
        "messages": [
            {
                "id": m.pk,
                "event_id": m.event_id,
                "event": m.event.scenario.code,
                "template": m.template.code,
                "status": m.status,
                "due_at": m.due_at.isoformat(),
                "rendered": m.rendered,
            }
            for m in messages.order_by("id")
        ],
        "inbox": [
            {
                "id": i.pk,
                "title": i.title,
                "body": i.body,
                "created_at": i.created_at.isoformat(),
                "read_at": i.read_at.isoformat() if i.read_at else None,
            }
            for i in inbox
        ],
    }


@transaction.atomic
def person_erase(*, audience: str, external_id: str) -> dict | None:
    """Erase one person: addresses, consents, inbox, the text of their messages and deliveries,
    the data of the events that sent them something; pending reminders to them (and a batch's
    messages still waiting for their deliveries) are cancelled
    and their follow-up plans stopped (a running plan would write new reminders to them every
    horizon scan). What remains is the bare record that something was sent (ids, times,
    statuses), until the retention purge. Returns counts, or None."""
    channels_part = recipient_erase(audience=audience, external_id=external_id)
    inbox_deleted = inbox_person_erase(audience=audience, recipient_id=external_id)
    if channels_part is None and not inbox_deleted:
        return None
    plans_stopped = PlanEnrollment.objects.filter(
        recipient__audience=audience, recipient__external_id=external_id, status=EnrollmentStatus.ACTIVE
    ).update(status=EnrollmentStatus.CANCELLED)
    mine = Message.objects.filter(recipient__audience=audience, recipient__external_id=external_id)
    # Reminders not fired, and a batch's messages whose deliveries a worker has not made yet.
    cancelled = mine.filter(Q(status=MessageStatus.SCHEDULED) | Q(deliveries_pending=True)).update(
        status=MessageStatus.CANCELLED, status_reason="erased on request", deliveries_pending=False
    )
    emptied = mine.update(rendered={}, data_overrides={})
    events_emptied, events_kept = _events_erase(event_ids=set(mine.values_list("event_id", flat=True)))
    return {
        **(channels_part or {}),
        "inbox_deleted": inbox_deleted,
        "messages_emptied": emptied,
        "reminders_cancelled": cancelled,
        "plans_stopped": plans_stopped,
        "events_emptied": events_emptied,
        "events_kept_for_others": events_kept,
    }


def _events_erase(*, event_ids: set[int]) -> tuple[int, int]:
    """Empty the `data` of the events that sent this person something: it holds what the
    backend said about them (a patient's name, an order) and, once every message of the event
    is rendered, nothing reads it again (the messages and deliveries keep their own texts, a
    replay is matched by the request's hash). An event with a reminder still scheduled for
    someone else, or an enrollment still running, keeps it until then: those render from it.
    Returns (emptied, kept)."""
    waiting = set(
        Message.objects.filter(event_id__in=event_ids, status=MessageStatus.SCHEDULED).values_list(
            "event_id", flat=True
        )
    )
    waiting |= set(
        PlanEnrollment.objects.filter(event_id__in=event_ids, status=EnrollmentStatus.ACTIVE).values_list(
            "event_id", flat=True
        )
    )
    emptied = Event.objects.filter(pk__in=event_ids - waiting).exclude(data={}).update(data={})
    return emptied, len(waiting)
