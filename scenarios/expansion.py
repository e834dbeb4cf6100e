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
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.models import Delivery, Recipient
from channels.rows import ids_reserve

from .catalog import bindings_for
from .models import Event, Message, MessageStatus, Rule
from .policies import RuleMessage
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
    lost_before = now - timedelta(seconds=settings.NOTIFYCENTER["REQUEUE_AFTER_SECONDS"])
    with transaction.atomic():
        if connection.vendor == "postgresql":
            pending = _claim(message_ids, lost_before, limit)
        else:
            pending = _claim_orm(message_ids, lost_before, limit)
        if not pending:
            return 0
        # Cancelled or failed since (an operator, a later event): no deliveries.
        ready = [m for m in pending if m.status == MessageStatus.DISPATCHED]
        if ready:
            bindings = bindings_for({m.template_id for m in ready})
            bound = sum(len(bindings.get(m.template_id, ())) for m in ready)
            (delivery_ids,) = ids_reserve((Delivery, bound))
            deliver_messages(ready, bindings=bindings, delivery_ids=delivery_ids)
    return len(pending)


# The pending messages locked and their flag cleared in one statement, in the transaction that
# makes their deliveries (the rows stay locked to its commit; SKIP LOCKED passes over those another
# worker holds). Only the columns the policies and the deliveries read.
_CLAIM_SQL = """
UPDATE scenarios_message SET deliveries_pending = false
WHERE id IN (
    SELECT id FROM scenarios_message WHERE deliveries_pending AND {which}
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
)
RETURNING id, event_id, rule_id, recipient_id, status, rendered::text, data_overrides::text
"""


@dataclass(slots=True)
class _Pending(RuleMessage):
    """A pending message as the policies (scenarios/policies.py, caps.py) and the deliveries read
    it, without a Message and its four related instances (loaded by the ORM they were four fifths
    of an expansion: bench/expand_cpu.py)."""

    pk: int
    event_id: int
    rule: Rule
    recipient: Recipient
    status: str
    rendered: dict
    data_overrides: dict
    events: "_Events"

    @property
    def event(self) -> Event:
        return self.events.get(self.event_id)


class _Events:
    """The claim's events, read at the first use: only de-duplication reads them (its key's data,
    and the event's own client and key)."""

    def __init__(self, ids: set[int]):
        self.ids, self.loaded = ids, None

    def get(self, pk: int) -> Event:
        if self.loaded is None:
            self.loaded = Event.objects.only("client", "idempotency_key", "data").in_bulk(self.ids)
        return self.loaded[pk]


def _claim(message_ids: list[int] | None, lost_before: datetime, limit: int) -> list[_Pending]:
    if message_ids is not None:
        which, params = "id = ANY(%s)", [message_ids]
    else:
        which, params = "dispatched_at < %s", [lost_before]
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL.format(which=which), [*params, limit])
        rows = cursor.fetchall()
    if not rows:
        return []
    rules = Rule.objects.select_related("template").in_bulk({r[2] for r in rows})
    people = Recipient.objects.in_bulk({r[3] for r in rows})
    events = _Events({r[1] for r in rows})
    # Messages rendered alike (a batch's events for many people) share one dict, as they did in
    # the request: the policies then make one content for them, written as one JSON text.
    texts: dict[str, dict] = {}

    def shared(text: str) -> dict:
        found = texts.get(text)
        if found is None:
            found = texts[text] = orjson.loads(text)
        return found

    return [
        _Pending(pk, event_id, rules[rule_id], people[recipient_id], status, shared(rendered), shared(extra), events)
        for pk, event_id, rule_id, recipient_id, status, rendered, extra in sorted(rows)
    ]


def _claim_orm(message_ids: list[int] | None, lost_before: datetime, limit: int) -> list[Message]:
    """The same on SQLite (the embedded default: one writer at a time, no row locks to skip)."""
    claim = Message.objects.select_for_update(skip_locked=True, of=("self",)).filter(deliveries_pending=True)
    claim = claim.filter(pk__in=message_ids) if message_ids is not None else claim.filter(dispatched_at__lt=lost_before)
    pending = list(claim.select_related("rule", "template", "recipient", "event").order_by("pk")[:limit])
    Message.objects.filter(pk__in=[m.pk for m in pending]).update(deliveries_pending=False)
    return pending


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
