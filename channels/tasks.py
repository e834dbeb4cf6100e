"""Thin Celery tasks: each calls one service."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from .flight import chunk_send
from .otp import otp_purge
from .reconcile import deliveries_reconcile
from .retention import receipts_purge
from .sending import deliveries_requeue_due, deliveries_send
from .services import deliveries_release_deferred, delivery_chunks, enqueue_chunk
from .tokens import token_refreshes_purge

logger = logging.getLogger(__name__)

# The database away (a failover, a cut connection): the task comes back in seconds rather than
# waiting for the outbox scan to notice its rows. What it had claimed is freed by the lease.
DB_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 30,
}


@shared_task(name="channels.tasks.deliver_many", acks_late=True, reject_on_worker_lost=True, **DB_RETRY)
def deliver_many(delivery_ids: list[int]) -> None:
    """A chunk of deliveries; a redelivered task skips those already settled. Provider calls all
    in flight together on this process's event loop (channels/flight.py) unless turned off."""
    deliveries_send(delivery_ids=delivery_ids, remote_send=chunk_send if settings.PROVIDER_EVENT_LOOP else None)


def deliver_now(deliveries: list[tuple[int, str]]) -> None:
    """(id, channel) deliveries this worker just made, sent here in the task's chunks rather than
    queued behind every task enqueued since; a chunk that fails here goes to the broker as usual."""
    for chunk in delivery_chunks(deliveries):
        try:
            deliver_many(chunk)
        except Exception:
            logger.exception("deliveries %s: sending at once failed; handed to the workers", chunk[:5])
            enqueue_chunk(chunk)


@shared_task(name="channels.tasks.reconcile_many", acks_late=True, reject_on_worker_lost=True, **DB_RETRY)
def reconcile_many(delivery_ids: list[int]) -> None:
    """Unknown outcomes: ask, resend with the same key, or settle (channels/reconcile.py)."""
    deliveries_reconcile(delivery_ids=delivery_ids)


@shared_task(name="channels.tasks.requeue_due_deliveries", ignore_result=True)
def requeue_due_deliveries() -> int:
    return deliveries_requeue_due()


@shared_task(name="channels.tasks.purge_otp_codes", ignore_result=True)
def purge_otp_codes() -> int:
    return otp_purge()


@shared_task(name="channels.tasks.purge_old_receipts", ignore_result=True)
def purge_old_receipts() -> int:
    return receipts_purge(older_than_days=settings.EVENT_RETENTION_DAYS)


@shared_task(name="channels.tasks.purge_token_refreshes", ignore_result=True)
def purge_token_refreshes() -> int:
    return token_refreshes_purge()


@shared_task(name="channels.tasks.retry_early_receipts", ignore_result=True)
def retry_early_receipts() -> int:
    """Receipts that came before their delivery's send settled."""
    from .receipts import receipts_retry_early

    return receipts_retry_early()


@shared_task(name="channels.tasks.mark_inbox_reads", ignore_result=True)
def mark_inbox_reads() -> int:
    """Inbox reads since the last scan become `read` on their deliveries (channels/reads.py)."""
    from .reads import deliveries_mark_read

    return deliveries_mark_read()


@shared_task(name="channels.tasks.pull_receipts", ignore_result=True)
def pull_receipts() -> dict:
    """JPush arrival reports, and SMS reports for accounts that pull (channels/receipts/pull.py)."""
    from .receipts.pull import receipts_pull_all

    return receipts_pull_all()


@shared_task(name="channels.tasks.release_deferred_deliveries", ignore_result=True)
def release_deferred_deliveries() -> int:
    return deliveries_release_deferred()
