"""Thin Celery tasks: each calls one service."""

from celery import shared_task

from .services import messages_fire_due


@shared_task(name="scenarios.tasks.fire_due_messages", ignore_result=True)
def fire_due_messages() -> int:
    return messages_fire_due()
