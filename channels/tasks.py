"""Thin Celery tasks: each calls one service."""

from celery import shared_task

from .services import deliveries_requeue_due, delivery_send


@shared_task(name="channels.tasks.deliver", acks_late=True, reject_on_worker_lost=True)
def deliver(delivery_id: int) -> None:
    delivery_send(delivery_id=delivery_id)


@shared_task(name="channels.tasks.deliver_many", acks_late=True, reject_on_worker_lost=True)
def deliver_many(delivery_ids: list[int]) -> None:
    """Several deliveries in one task; a redelivered task skips those already settled."""
    for delivery_id in delivery_ids:
        delivery_send(delivery_id=delivery_id)


@shared_task(name="channels.tasks.requeue_due_deliveries", ignore_result=True)
def requeue_due_deliveries() -> int:
    return deliveries_requeue_due()
