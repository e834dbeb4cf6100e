"""Counters and live events: the bookkeeping every inbox write does in its own transaction.

A write to a person's inbox (1) locks the person's counter row first (`counter_lock`), so that
changes for one person are serialized and their event numbers follow commit order, (2) changes
the message rows, and (3) calls `changes_commit` with what changed: it moves the counts by the
deltas, numbers the events after the counter's `seq`, inserts them, and publishes them after
commit. A live connection that missed a publish (a process died between commit and publish)
finds the event in the table by its number; nothing is lost, only late.
"""

import json
import logging
from collections import Counter, defaultdict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import connection, transaction

from .models import Category, InboxCounter, InboxEvent

logger = logging.getLogger(__name__)

CATEGORIES = tuple(Category.values)
UNREAD_COLUMNS = tuple(f"unread_{c}" for c in CATEGORIES)
COUNTER_TABLE = InboxCounter._meta.db_table


@dataclass
class PersonChange:
    """What one write did to one person's inbox: count deltas and the events to push."""

    unread: Counter = field(default_factory=Counter)  # category -> delta
    unseen: int = 0
    events: list[tuple[str, dict]] = field(default_factory=list)  # (kind, data)

    @property
    def counts_changed(self) -> bool:
        return self.unseen != 0 or any(self.unread.values())


def counts_answer(row) -> dict:
    """The counts as the API and the live events answer them, from a counter row or tuple
    (unread per category in CATEGORIES order, then unseen)."""
    by_category = dict(zip(CATEGORIES, row[: len(CATEGORIES)], strict=True))
    return {"total": sum(by_category.values()), "by_category": by_category, "unseen": row[len(CATEGORIES)]}


def counter_lock(*, audience: str, recipient_id: str) -> None:
    """Take the person's counter row lock (creating the row), until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {COUNTER_TABLE} (audience, recipient_id, {', '.join(UNREAD_COLUMNS)}, unseen, seq) "  # noqa: S608 (names are ours; values are parameters)
            f"VALUES (%s, %s, {', '.join(['0'] * len(UNREAD_COLUMNS))}, 0, 0) "
            "ON CONFLICT (audience, recipient_id) DO UPDATE SET seq = EXCLUDED.seq + "
            f"{COUNTER_TABLE}.seq",
            [audience, recipient_id],
        )


_held: ContextVar[dict | None] = ContextVar("inbox_changes_held", default=None)


@contextmanager
def changes_last():
    """Inside one transaction, for a caller with more to write after its inbox writes (the
    delivery engine's bookkeeping of a chunk): `changes_commit` gathers the changes, merged per
    person, and writes them when the block ends without error, as the transaction's last writes.
    A person's counter row lock, which every write to that person waits for, is then held from
    there to the commit only (an operations duty account that every event names has one row for
    all the workers). Counter_lock, taken first by the single-message writes, is not moved."""
    held: dict[tuple[str, str], PersonChange] = {}
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
    changes_commit(held)  # not reached when the block raised: the transaction rolls back


def changes_commit(changes: dict[tuple[str, str], PersonChange]) -> None:
    """Apply count deltas and record events for each person, in the caller's transaction;
    events are published after commit. People are handled in a fixed order, so two writes
    touching many people cannot deadlock on their counter rows. Inside `changes_last`, kept
    for its end."""
    held = _held.get()
    if held is not None:
        for key, change in changes.items():
            into = held.setdefault(key, PersonChange())
            into.unread.update(change.unread)
            into.unseen += change.unseen
            into.events.extend(change.events)
        return
    people = sorted(key for key, change in changes.items() if change.events or change.counts_changed)
    if not people:
        return
    rows = []
    for start in range(0, len(people), 500):
        rows.extend(_counters_move(people[start : start + 500], changes))
    events = []
    for audience, recipient_id, *values in rows:
        change = changes[(audience, recipient_id)]
        counts = counts_answer(values[:-1]) if change.counts_changed else None
        kinds = change.events or [("counts.changed", {})]
        seq = values[-1] - len(kinds)
        for kind, data in kinds:
            seq += 1
            events.append(
                InboxEvent(
                    audience=audience,
                    recipient_id=recipient_id,
                    seq=seq,
                    kind=kind,
                    data={**data, "counts": counts} if counts else data,
                )
            )
    InboxEvent.objects.bulk_create(events, batch_size=1000)
    transaction.on_commit(lambda: events_publish(events))


def _counters_move(people: list[tuple[str, str]], changes: dict) -> list[tuple]:
    """One upsert for a slice of people: counts moved by the deltas, seq by the event count;
    returns (audience, recipient_id, unread per category…, unseen, seq) after the change."""
    values, params = [], []
    for key in people:
        change = changes[key]
        values.append("(" + ", ".join(["%s"] * (len(UNREAD_COLUMNS) + 4)) + ")")
        params.extend([*key, *(change.unread.get(c, 0) for c in CATEGORIES), change.unseen, len(change.events) or 1])
    columns = [*UNREAD_COLUMNS, "unseen", "seq"]
    assignments = ", ".join(f"{c} = {COUNTER_TABLE}.{c} + EXCLUDED.{c}" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {COUNTER_TABLE} (audience, recipient_id, {', '.join(columns)}) "  # noqa: S608 (names are ours; values are parameters)
            f"VALUES {', '.join(values)} ON CONFLICT (audience, recipient_id) DO UPDATE SET {assignments} "
            f"RETURNING audience, recipient_id, {', '.join(columns)}",
            params,
        )
        return cursor.fetchall()


def event_answer(event: InboxEvent) -> dict:
    """An event as the live connections send it (and as it travels on Redis)."""
    return {"id": event.seq, "type": event.kind, "data": event.data}


def live_channel(audience: str, recipient_id: str) -> str:
    """The Redis pub/sub channel of one person. Pub/sub ignores Redis database numbers, so the
    configured prefix keeps separate deployments (and test runs) on one Redis apart."""
    return f"{settings.INBOX_LIVE_CHANNEL_PREFIX}{audience}:{recipient_id}"


_redis = None


def _publisher():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL)
    return _redis


def events_publish(events: list[InboxEvent]) -> None:
    """Publish committed events to their people's channels. A failure is logged, not raised: the
    write is committed, and connections find the events in the table (gap check, poll)."""
    if not settings.REDIS_URL or not events:
        return
    try:
        pipe = _publisher().pipeline(transaction=False)
        for event in events:
            payload = {
                "pk": event.pk,
                "audience": event.audience,
                "recipient_id": event.recipient_id,
                **event_answer(event),
            }
            pipe.publish(live_channel(event.audience, event.recipient_id), json.dumps(payload, default=str))
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
    except redis.RedisError:
        logger.warning("live inbox events not published; connections will read them from the table", exc_info=True)


def deltas_by_person(rows, *, sign: int) -> dict[tuple[str, str], PersonChange]:
    """Count deltas from (audience, recipient_id, category, unread, unseen) rows of messages
    that enter (+1) or leave (-1) the counted set."""
    changes = defaultdict(PersonChange)
    for audience, recipient_id, category, unread, unseen in rows:
        change = changes[(audience, recipient_id)]
        if unread:
            change.unread[category] += sign
        if unseen:
            change.unseen += sign
    return changes
