"""Recurring broadcasts: each RecurringBroadcast keeps one django-celery-beat PeriodicTask on its
crontab; each firing is an ordinary event, idempotent per minute, so a beat that fires twice
sends once."""

import json

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from .intake import event_accept
from .models import RecurringBroadcast

TASK = "scenarios.tasks.send_broadcast"


@transaction.atomic
def broadcast_schedule_sync(*, broadcast: RecurringBroadcast) -> PeriodicTask:
    """Create or update the broadcast's periodic task to match it."""
    task = broadcast.periodic_task or PeriodicTask(name=f"broadcast:{broadcast.pk}", task=TASK)
    task.crontab = broadcast.crontab
    task.args = json.dumps([broadcast.pk])
    task.enabled = broadcast.enabled
    task.description = broadcast.name
    task.save()
    if broadcast.periodic_task_id != task.pk:
        RecurringBroadcast.objects.filter(pk=broadcast.pk).update(periodic_task=task)
        broadcast.periodic_task = task
    return task


@transaction.atomic
def broadcast_delete(*, broadcast: RecurringBroadcast) -> None:
    task = broadcast.periodic_task
    broadcast.delete()
    if task is not None:
        task.delete()


def broadcast_send(*, broadcast_id: int, now=None) -> dict | None:
    """Send one occurrence now; the idempotency key is the local minute it fired for."""
    broadcast = RecurringBroadcast.objects.select_related("scenario").filter(pk=broadcast_id, enabled=True).first()
    if broadcast is None:
        return None
    minute = timezone.localtime(now or timezone.now()).strftime("%Y%m%dT%H%M")
    answer, _ = event_accept(
        client="recurring-broadcasts",
        payload={
            "event": broadcast.scenario.code,
            "idempotency_key": f"broadcast-{broadcast.pk}-{minute}",
            "data": broadcast.data,
            "recipients": broadcast.recipients,
        },
    )
    return answer
