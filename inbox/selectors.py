import json
from datetime import datetime
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, Q, QuerySet

from .changes import CATEGORIES, COUNTER_TABLE, UNREAD_COLUMNS, counts_answer
from .models import InboxEvent, InboxMessage

_COUNTS_SQL = (
    f"SELECT {', '.join(UNREAD_COLUMNS)}, unseen FROM {COUNTER_TABLE} "  # noqa: S608 (names are ours)
    "WHERE audience = %s AND recipient_id = %s"
)
_ZERO = (0,) * (len(UNREAD_COLUMNS) + 1)
# The same row with the person's last live event (`seq`) after the counts.
_COUNTS_AND_SEQ_SQL = (
    f"SELECT {', '.join(UNREAD_COLUMNS)}, unseen, seq FROM {COUNTER_TABLE} "  # noqa: S608 (names are ours)
    "WHERE audience = %s AND recipient_id = %s"
)


class PageRow(NamedTuple):
    """A message as a list page reads it: the columns the answer needs (answers.message_answer
    takes it as it takes a model instance), no model instance built."""

    pk: int
    category: str
    title: str
    body: str
    link: dict
    actions: list
    template_code: str
    created_at: datetime
    seen_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None


_PAGE_COLUMNS = ("id", *PageRow._fields[1:])
_PAGE_SELECT = f"SELECT {', '.join(_PAGE_COLUMNS)} FROM {InboxMessage._meta.db_table} WHERE "  # noqa: S608 (names are ours)


def inbox_message_list(
    *,
    audience: str,
    recipient_id: str,
    category: str | None = None,
    unread: bool | None = None,
    seen: bool | None = None,
    archived: bool | None = False,
    before_id: int | None = None,
) -> QuerySet[InboxMessage]:
    """A person's visible messages, newest first; `before_id` is the keyset cursor (no OFFSET).
    Archived messages are left out unless asked for (`archived=True` lists only them, `None`
    lists both)."""
    qs = InboxMessage.objects.filter(audience=audience, recipient_id=recipient_id, deleted_at__isnull=True)
    if category:
        qs = qs.filter(category=category)
    if unread is not None:
        qs = qs.filter(read_at__isnull=unread)
    if seen is not None:
        qs = qs.filter(seen_at__isnull=not seen)
    if archived is not None:
        qs = qs.filter(archived_at__isnull=not archived)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return qs.order_by("-id")


def inbox_page(
    *,
    audience: str,
    recipient_id: str,
    limit: int,
    category: str | None = None,
    unread: bool | None = None,
    seen: bool | None = None,
    archived: bool | None = False,
    before_id: int | None = None,
) -> list[PageRow]:
    """Up to `limit` of a person's visible messages, newest first, as `inbox_message_list` selects
    them (same filters, same order). On PostgreSQL one statement straight to tuples: a page is
    read far more often than anything else, and the ORM's query building and model instances
    were two thirds of its time (bench/inbox.py)."""
    if connection.vendor != "postgresql":
        messages = inbox_message_list(
            audience=audience,
            recipient_id=recipient_id,
            category=category,
            unread=unread,
            seen=seen,
            archived=archived,
            before_id=before_id,
        ).only(*_PAGE_COLUMNS)[:limit]
        return [PageRow(m.pk, *(getattr(m, f) for f in PageRow._fields[1:])) for m in messages]
    # Fixed fragments only; every value a parameter. The partial index inbox_owner_list serves
    # each shape (owner, deleted_at IS NULL, newest id first).
    where = ["audience = %s", "recipient_id = %s", "deleted_at IS NULL"]
    params: list = [audience, recipient_id]
    if category:
        where.append("category = %s")
        params.append(category)
    if unread is not None:
        where.append("read_at IS NULL" if unread else "read_at IS NOT NULL")
    if seen is not None:
        where.append("seen_at IS NOT NULL" if seen else "seen_at IS NULL")
    if archived is not None:
        where.append("archived_at IS NOT NULL" if archived else "archived_at IS NULL")
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(_PAGE_SELECT + " AND ".join(where) + " ORDER BY id DESC LIMIT %s", params)
        rows = cursor.fetchall()
    # jsonb arrives as text (Django's psycopg loader leaves it to JSONField, as here).
    loads = json.loads
    return [PageRow(i, c, t, b, loads(lk), loads(ac), tc, *times) for i, c, t, b, lk, ac, tc, *times in rows]


def inbox_counts(*, audience: str, recipient_id: str) -> dict:
    """Unread (total and per category) and unseen, from the person's counter: one row read by
    its unique index, whatever the person holds. Archived and deleted messages are not counted."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_SQL, [audience, recipient_id])
        row = cursor.fetchone()
    return counts_answer(row or _ZERO)


def inbox_counts_and_position(*, audience: str, recipient_id: str) -> dict:
    """The counts and `last_event_id`, the person's last live event (their counter's `seq`), read
    from the same row in one statement. An app that reads this, then its list, then connects with
    this id misses no change: one made between the reads comes again as an event (its id already
    listed: skipped)."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_AND_SEQ_SQL, [audience, recipient_id])
        row = cursor.fetchone() or (*_ZERO, 0)
    return {**counts_answer(row), "last_event_id": row[-1]}


def inbox_unread_counts(*, audience: str, recipient_id: str) -> dict[str, int]:
    """Unread visible messages per category (every category present, zero or not)."""
    return inbox_counts(audience=audience, recipient_id=recipient_id)["by_category"]


def inbox_counts_truth(*, audience: str, recipient_id: str) -> dict:
    """The counts recomputed from the messages themselves (what the counter must equal)."""
    rows = (
        InboxMessage.objects.filter(
            audience=audience, recipient_id=recipient_id, deleted_at__isnull=True, archived_at__isnull=True
        )
        .values("category")
        .annotate(
            unread=Count("id", filter=Q(read_at__isnull=True)), unseen=Count("id", filter=Q(seen_at__isnull=True))
        )
        .order_by()
    )
    unread = dict.fromkeys(CATEGORIES, 0)
    unseen = 0
    for row in rows:
        unread[row["category"]] = row["unread"]
        unseen += row["unseen"]
    return counts_answer([*(unread[c] for c in CATEGORIES), unseen])


def inbox_owners(*, audience: str | None = None) -> QuerySet:
    """Everyone who holds messages or a counter, as (audience, recipient_id) pairs (for a recount)."""
    messages = InboxMessage.objects.values_list("audience", "recipient_id")
    from .models import InboxCounter

    counters = InboxCounter.objects.values_list("audience", "recipient_id")
    if audience:
        messages, counters = messages.filter(audience=audience), counters.filter(audience=audience)
    return messages.union(counters)


def inbox_message_get(*, audience: str, recipient_id: str, message_id: int) -> InboxMessage | None:
    """One of a person's own visible messages, or None (never someone else's)."""
    return InboxMessage.objects.filter(
        pk=message_id, audience=audience, recipient_id=recipient_id, deleted_at__isnull=True
    ).first()


def inbox_live_state(*, audience: str, recipient_id: str) -> tuple[int, dict]:
    """The person's last event number and counts, as a live connection starts from them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(UNREAD_COLUMNS)}, unseen, seq FROM {COUNTER_TABLE} "  # noqa: S608 (names are ours; values are parameters)
            "WHERE audience = %s AND recipient_id = %s",
            [audience, recipient_id],
        )
        row = cursor.fetchone() or (*_ZERO, 0)
    return row[-1], counts_answer(row[:-1])


def inbox_events_after(*, audience: str, recipient_id: str, seq: int, limit: int) -> list[InboxEvent]:
    """A person's events numbered after `seq`, oldest first, at most `limit`."""
    return list(
        InboxEvent.objects.filter(audience=audience, recipient_id=recipient_id, seq__gt=seq).order_by("seq")[:limit]
    )


def inbox_events_oldest_seq(*, audience: str, recipient_id: str) -> int | None:
    """The first event number still kept for a person (older ones were purged)."""
    return (
        InboxEvent.objects.filter(audience=audience, recipient_id=recipient_id)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )


def inbox_event_heads_since(*, after_id: int, limit: int = 20000) -> list[tuple[int, str, str]]:
    """(id, audience, recipient_id) of everyone's events after a table id (the live poll)."""
    return list(
        InboxEvent.objects.filter(pk__gt=after_id).order_by("pk").values_list("pk", "audience", "recipient_id")[:limit]
    )


def inbox_events_by_ids(*, ids: list[int]) -> list[InboxEvent]:
    """Events by table id, in id order."""
    return list(InboxEvent.objects.filter(pk__in=ids).order_by("pk"))


def inbox_events_last_id() -> int:
    """The highest event table id (where a web process's poll starts)."""
    return InboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
