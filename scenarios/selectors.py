from django.utils import timezone

from channels.selectors import deliveries_for_messages

from .models import Event


def event_detail(*, client: str, event_id: int) -> dict | None:
    """One of the client's events with its messages and every delivery's status and last error."""
    event = Event.objects.filter(pk=event_id, client=client).select_related("scenario").first()
    if event is None:
        return None
    messages = list(event.messages.select_related("template", "recipient", "rule").order_by("id"))
    deliveries: dict[int, list] = {}
    for d in deliveries_for_messages(message_refs=[m.pk for m in messages]):
        deliveries.setdefault(d.message_ref, []).append(
            {
                "id": d.pk,
                "channel": d.channel,
                "status": d.status,
                "attempts": d.attempt_count,
                "last_error_code": d.last_error_code,
                "last_error_message": d.last_error_message,
                "finished_at": _local(d.finished_at),
            }
        )
    return {
        "id": event.pk,
        "event": event.scenario.code,
        "idempotency_key": event.idempotency_key,
        "subject": {"type": event.subject_type, "id": event.subject_id} if event.subject_id else None,
        "occurred_at": _local(event.occurred_at),
        "received_at": _local(event.received_at),
        "data": event.data,
        "messages": [
            {
                "id": m.pk,
                "rule": m.rule.code if m.rule else f"plan:{m.plan_step_id}",
                "audience": m.audience,
                "recipient": m.recipient.external_id,
                "template": m.template.code,
                "status": m.status,
                "status_reason": m.status_reason,
                "due_at": _local(m.due_at),
                "deliveries": deliveries.get(m.pk, []),
            }
            for m in messages
        ],
    }


def _local(moment):
    """Times in answers are the hospital's local time, as in the intake answer (+08:00)."""
    return timezone.localtime(moment).isoformat() if moment else None
