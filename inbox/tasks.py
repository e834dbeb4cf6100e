"""Thin Celery tasks: each calls one service."""

from celery import shared_task
from django.conf import settings

from .services import inbox_events_purge, inbox_messages_purge


@shared_task(name="inbox.tasks.purge_old_messages", ignore_result=True)
def purge_old_messages() -> int:
    return inbox_messages_purge(older_than_days=settings.INBOX_RETENTION_DAYS)


@shared_task(name="inbox.tasks.purge_old_events", ignore_result=True)
def purge_old_events() -> int:
    return inbox_events_purge(older_than_hours=settings.INBOX_LIVE_EVENT_RETENTION_HOURS)
