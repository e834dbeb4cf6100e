"""Thin Celery tasks: each calls one service."""

from celery import shared_task
from django.conf import settings

from channels.services import deliveries_handed_to
from channels.tasks import deliver_now

from .broadcasts import broadcast_send
from .expansion import messages_expand
from .fanout import broadcast_run, broadcasts_resume_stale
from .plans import plans_materialize_due
from .policies import chains_advance
from .retention import events_purge
from .services import messages_fire_due


@shared_task(name="scenarios.tasks.fire_due_messages", ignore_result=True)
def fire_due_messages() -> int:
    return messages_fire_due()


@shared_task(name="scenarios.tasks.expand_messages", ignore_result=True)
def expand_messages(message_ids: list[int]) -> int:
    """A batch's messages' deliveries, right after the batch's commit (scenarios/expansion.py),
    then sent by this worker at once: queued, they would wait behind every batch's expansion
    enqueued since, and a burst's first messages would reach nobody until its last was expanded."""
    made: list[tuple[int, str]] = []
    with deliveries_handed_to(made.extend):
        taken = messages_expand(message_ids=message_ids)
    deliver_now(made)
    return taken


@shared_task(name="scenarios.tasks.expand_lost_messages", ignore_result=True)
def expand_lost_messages() -> int:
    """Pending messages whose hand-off was lost (the broker down, a worker killed)."""
    return messages_expand()


@shared_task(name="scenarios.tasks.fire_message", ignore_result=True)
def fire_message(message_id: int) -> int:
    """One reminder, if due: what a one-PeriodicTask-per-reminder design would call (the
    reminders benchmark's peer). The product fires reminders with the scan above."""
    return messages_fire_due(message_ids=[message_id])


@shared_task(name="scenarios.tasks.send_broadcast", ignore_result=True)
def send_broadcast(broadcast_id: int) -> None:
    broadcast_send(broadcast_id=broadcast_id)


@shared_task(name="scenarios.tasks.materialize_plans", ignore_result=True)
def materialize_plans() -> int:
    return plans_materialize_due()


@shared_task(name="scenarios.tasks.purge_old_events", ignore_result=True)
def purge_old_events() -> int:
    return events_purge(older_than_days=settings.EVENT_RETENTION_DAYS)


@shared_task(name="scenarios.tasks.advance_fallback_chains", ignore_result=True)
def advance_fallback_chains() -> int:
    return chains_advance()


@shared_task(name="scenarios.tasks.run_broadcast", ignore_result=True, acks_late=True)
def run_broadcast(broadcast_id: int) -> str:
    return broadcast_run(broadcast_id=broadcast_id)


@shared_task(name="scenarios.tasks.resume_broadcasts", ignore_result=True)
def resume_broadcasts() -> int:
    return broadcasts_resume_stale()
