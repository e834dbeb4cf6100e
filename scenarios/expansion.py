"""A batch's deliveries, made by a worker right after the batch is accepted.

`POST /api/v1/events/batch` writes each event and its messages, as a single event does, and
answers; the deliveries (a row per channel of each immediate message, each decided by the delivery
policies, and its first timeline row) are what made a batch cost three times a bare commit per
event (bench/README.md). A batch's immediate messages are written `deliveries_pending` instead,
and one task after the commit makes their deliveries, in one transaction, with the same policies,
as the intake would have (scenarios/tests/test_expansion.py holds the two ways to the same rows).

Nothing accepted is lost: the flag is written in the batch's transaction, so a message is either
not accepted or waits for its deliveries. A task lost with the broker, or a worker killed in the
middle (its transaction rolls back), leaves the flag up, and the beat's scan makes them once
`REQUEUE_AFTER_SECONDS` have passed since the message was dispatched. Rows are claimed with
SKIP LOCKED and the flag is cleared in the transaction that makes the deliveries: a message gets
its deliveries once, however many tasks and scans reach it.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.models import Delivery
from channels.rows import ids_reserve

from .catalog import bindings_for
from .models import Message, MessageStatus
from .services import deliver_messages

logger = logging.getLogger(__name__)


def messages_expand(
    *, message_ids: list[int] | None = None, now: datetime | None = None, limit: int | None = None
) -> int:
    """Make the deliveries of these pending messages (those still pending), or, without ids, of
    pending messages dispatched longer than the requeue time ago (a lost hand-off). Returns how
    many messages it took."""
    now = now or timezone.now()
    limit = limit or settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
    with transaction.atomic():
        claim = Message.objects.select_for_update(skip_locked=True, of=("self",)).filter(deliveries_pending=True)
        if message_ids is not None:
            claim = claim.filter(pk__in=message_ids)
        else:
            lost_before = now - timedelta(seconds=settings.NOTIFYCENTER["REQUEUE_AFTER_SECONDS"])
            claim = claim.filter(dispatched_at__lt=lost_before)
        pending = list(claim.select_related("rule", "template", "recipient", "event").order_by("pk")[:limit])
        if not pending:
            return 0
        Message.objects.filter(pk__in=[m.pk for m in pending]).update(deliveries_pending=False)
        # Cancelled or failed since (an operator, a later event): no deliveries.
        ready = [m for m in pending if m.status == MessageStatus.DISPATCHED]
        if ready:
            bindings = bindings_for({m.template_id for m in ready})
            bound = sum(len(bindings.get(m.template_id, ())) for m in ready)
            (delivery_ids,) = ids_reserve((Delivery, bound))
            deliver_messages(ready, bindings=bindings, delivery_ids=delivery_ids)
    return len(pending)


def expansion_enqueue(message_ids: list[int]) -> None:
    """Hand pending messages to the workers after the commit that wrote them, one task a
    SCAN_BATCH_SIZE. If the broker refuses, the scan makes them later (messages_expand without ids)."""
    from .tasks import expand_messages

    size = settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
    for start in range(0, len(message_ids), size):
        chunk = message_ids[start : start + size]
        try:
            expand_messages.delay(chunk)
        except Exception:
            logger.exception("enqueue of pending messages %s failed; the scan will make their deliveries", chunk)
