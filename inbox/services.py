"""Writes to the station inbox. Each one keeps the person's counter and live events in its own
transaction (see changes.py): the counter row is locked first, then the messages change."""

from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from .answers import message_answer
from .changes import PersonChange, changes_commit, counter_lock, deltas_by_person
from .models import InboxActionPress, InboxCounter, InboxEvent, InboxMessage

# A bulk change lists the ids it touched in its live event up to this many; past it the event
# says which category (or all) up to which id, and the app reloads its list.
EVENT_IDS_MAX = 200

MARKS = {
    # action: (event kind, the rows it applies to, what it sets)
    "seen": ("message.seen", Q(seen_at__isnull=True), lambda now: {"seen_at": now}),
    "read": (
        "message.read",
        Q(read_at__isnull=True),
        lambda now: {"read_at": now, "seen_at": Coalesce("seen_at", now)},
    ),
    "archive": ("message.archived", Q(archived_at__isnull=True), lambda now: {"archived_at": now}),
    "delete": ("message.deleted", Q(), lambda now: {"deleted_at": now}),
}


def inbox_message_put(
    *,
    audience: str,
    recipient_id: str,
    title: str,
    body: str,
    category: str,
    link: dict,
    source_key: str,
    template_code: str = "",
    actions: list | None = None,
) -> tuple[InboxMessage, bool]:
    """Put one message into a person's inbox; the same source_key twice yields the first row.
    A new message counts as unread and unseen and is pushed live as `message.created`."""
    with transaction.atomic():
        counter_lock(audience=audience, recipient_id=recipient_id)
        try:
            # Insert first: a repeat is the rare case, so it pays the extra read, not every message.
            with transaction.atomic():
                message = InboxMessage.objects.create(
                    audience=audience,
                    recipient_id=recipient_id,
                    title=title,
                    body=body,
                    category=category,
                    link=link,
                    actions=actions or [],
                    source_key=source_key,
                    template_code=template_code,
                )
        except IntegrityError:
            return InboxMessage.objects.get(source_key=source_key), False
        change = PersonChange(unseen=1, events=[("message.created", {"message": message_answer(message)})])
        change.unread[category] = 1
        changes_commit({(audience, recipient_id): change})
    return message, True


def inbox_messages_put_many(rows: list[dict]) -> dict[str, int]:
    """Put many messages at once (fan-out); rows already there by source_key are left as they
    are. Returns each source_key's message id. Counters and live events for the new rows are
    written in the same transaction, one statement per slice of people."""
    if not rows:
        return {}
    ids = {}
    # No savepoint: inside the engine's claiming transaction it would cost two statements a
    # chunk, and nothing here is retried on its own.
    with transaction.atomic(savepoint=False):
        created = []
        for start in range(0, len(rows), 500):
            created.extend(_insert_new(rows[start : start + 500]))
        changes = {}
        for message in created:
            change = changes.setdefault((message.audience, message.recipient_id), PersonChange())
            change.unread[message.category] += 1
            change.unseen += 1
            change.events.append(("message.created", {"message": message_answer(message)}))
        changes_commit(changes)
        ids.update((m.source_key, m.pk) for m in created)
    missing = [row["source_key"] for row in rows if row["source_key"] not in ids]
    for start in range(0, len(missing), 1000):
        ids.update(
            InboxMessage.objects.filter(source_key__in=missing[start : start + 1000]).values_list("source_key", "id")
        )
    return ids


INSERT_FIELDS = ("audience", "recipient_id", "title", "body", "category", "link", "actions", "source_key")
INSERT_FIELDS += ("template_code", "created_at")


def _insert_new(rows: list[dict]) -> list[InboxMessage]:
    """INSERT … ON CONFLICT (source_key) DO NOTHING RETURNING: the rows that were new, with ids."""
    now = timezone.now()
    fields = [InboxMessage._meta.get_field(name) for name in INSERT_FIELDS]
    messages, params = [], []
    for row in rows:
        message = InboxMessage(**{"actions": [], **row, "created_at": now})
        messages.append(message)
        params.extend(f.get_db_prep_save(getattr(message, f.attname), connection) for f in fields)
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InboxMessage._meta.db_table} ({', '.join(f.column for f in fields)}) "  # noqa: S608 (names are ours; values are parameters)
            f"VALUES {', '.join([placeholder] * len(rows))} ON CONFLICT (source_key) DO NOTHING "
            "RETURNING id, source_key",
            params,
        )
        new_ids = dict((key, pk) for pk, key in cursor.fetchall())
    created = []
    for message in messages:
        if message.source_key in new_ids:
            message.pk = new_ids.pop(message.source_key)  # pop: a key twice in one call is one row
            created.append(message)
    return created


def inbox_messages_mark(
    *,
    audience: str,
    recipient_id: str,
    action: str,
    ids: list[int] | None = None,
    category: str | None = None,
) -> int:
    """Mark a person's visible messages seen, read (which is also seen), archived or deleted:
    the ones named by `ids`, or a category's, or all. Returns how many changed; each change
    moves the counts in the same transaction and is pushed live as one event."""
    kind = MARKS[action][0]
    owner = {"audience": audience, "recipient_id": recipient_id}
    with transaction.atomic():
        counter_lock(**owner)
        # The counter lock keeps every other writer of this person's messages out until commit,
        # so the rows read are the rows the update changes.
        marking = _mark_in_sql if connection.vendor == "postgresql" else _mark_through_orm
        groups = marking(owner=owner, action=action, ids=ids, category=category, now=timezone.now())
        touched = sum(n for *_, n, _, _ in groups)
        if not touched:
            return 0
        change = PersonChange()
        for row_category, unseen, unread, archived, n, _, _ in groups:
            if archived:
                continue  # archived messages are already out of the counts
            if action in ("read", "archive", "delete") and unread:
                change.unread[row_category] -= n
            if unseen:
                change.unseen -= n
        if touched <= EVENT_IDS_MAX:
            data = {"ids": sorted(pk for *_, some_ids in groups for pk in some_ids)}
        else:
            data = {"ids": None, "category": category, "up_to_id": max(last for *_, last, _ in groups)}
        change.events.append((kind, data))
        changes_commit({(audience, recipient_id): change})
    return touched


# A group of marked rows: (category, was unseen, was unread, was archived, how many, the largest
# id, up to EVENT_IDS_MAX + 1 of their ids).
MarkedGroup = tuple[str, bool, bool, bool, int, int, list[int]]


def _mark_through_orm(*, owner: dict, action: str, ids, category, now) -> list[MarkedGroup]:
    """The rows read, then updated: two statements and every row through Python (SQLite)."""
    _, pending, sets = MARKS[action]
    qs = InboxMessage.objects.filter(pending, **owner, deleted_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    if category:
        qs = qs.filter(category=category)
    rows = list(qs.values_list("id", "category", "seen_at", "read_at", "archived_at"))
    if rows:
        qs.update(**sets(now))
    return [(c, seen is None, read is None, archived is not None, 1, pk, [pk]) for pk, c, seen, read, archived in rows]


# What each action sets, and which rows it applies to, as MARKS says in the ORM's terms.
_MARK_SQL = {
    "seen": ("seen_at = %(now)s", "seen_at IS NULL"),
    "read": ("read_at = %(now)s, seen_at = COALESCE(seen_at, %(now)s)", "read_at IS NULL"),
    "archive": ("archived_at = %(now)s", "archived_at IS NULL"),
    "delete": ("deleted_at = %(now)s", "TRUE"),
}


def _mark_in_sql(*, owner: dict, action: str, ids, category, now) -> list[MarkedGroup]:
    """One statement on PostgreSQL: the rows' states before the change, grouped, come back from
    the same statement that updates them; a read-all of thousands of messages sends a few rows to
    Python, not thousands (bench/inbox.py: read-all, heavy user)."""
    sets, pending = _MARK_SQL[action]
    where = ["audience = %(audience)s", "recipient_id = %(recipient_id)s", "deleted_at IS NULL", pending]
    if ids is not None:
        where.append("id = ANY(%(ids)s)")
    if category:
        where.append("category = %(category)s")
    table = InboxMessage._meta.db_table
    sql = (
        f"WITH old AS (SELECT id, category, seen_at IS NULL AS unseen, read_at IS NULL AS unread,"  # noqa: S608 (fixed fragments; values are parameters)
        f" archived_at IS NOT NULL AS archived FROM {table} WHERE {' AND '.join(where)}),"
        f" changed AS (UPDATE {table} m SET {sets} FROM old WHERE m.id = old.id)"
        " SELECT category, unseen, unread, archived, count(*), max(id),"
        f" (array_agg(id ORDER BY id))[1:{EVENT_IDS_MAX + 1}] FROM old GROUP BY 1, 2, 3, 4"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {**owner, "ids": list(ids or []), "category": category, "now": now})
        return cursor.fetchall()


def inbox_message_mark_read(*, message: InboxMessage) -> InboxMessage:
    """Mark one message read; reading it again keeps the first read time."""
    inbox_messages_mark(audience=message.audience, recipient_id=message.recipient_id, action="read", ids=[message.pk])
    message.refresh_from_db()
    return message


def inbox_messages_mark_read(*, audience: str, recipient_id: str, category: str | None = None) -> int:
    """Mark all of a person's unread messages read (or one category's); returns how many."""
    return inbox_messages_mark(audience=audience, recipient_id=recipient_id, action="read", category=category)


def inbox_message_delete(*, message: InboxMessage) -> None:
    """Hide a message from its owner's lists and counts. The row stays until retention purges it,
    so a retried delivery (same source_key) cannot bring it back."""
    inbox_messages_mark(audience=message.audience, recipient_id=message.recipient_id, action="delete", ids=[message.pk])


def inbox_action_press(*, message: InboxMessage, key: str, platform: str = "") -> InboxActionPress:
    """Record that the owner pressed one of the message's buttons; pressing opens the message,
    so it is marked read as well. The caller checks that the key is one of the message's."""
    with transaction.atomic():
        press = InboxActionPress.objects.create(message=message, key=key, platform=platform or "")
        inbox_messages_mark(
            audience=message.audience, recipient_id=message.recipient_id, action="read", ids=[message.pk]
        )
    return press


def inbox_messages_purge(*, older_than_days: int, batch_size: int = 2000, max_batches: int | None = None) -> int:
    """Delete messages older than the retention, a small batch per transaction so that none
    holds many row locks or runs long; the counts of the people concerned move in the same
    transaction. Returns how many were deleted."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            batch = list(
                InboxMessage.objects.filter(created_at__lt=cutoff)
                .order_by("id")
                .values_list("id", "audience", "recipient_id")[:batch_size]
            )
            if not batch:
                break
            # Counter rows first (in a fixed order), as every other writer takes them.
            for owner in sorted({(a, r) for _, a, r in batch}):
                counter_lock(audience=owner[0], recipient_id=owner[1])
            doomed = InboxMessage.objects.filter(pk__in=[pk for pk, *_ in batch])
            counted = doomed.filter(deleted_at__isnull=True, archived_at__isnull=True).values_list(
                "audience", "recipient_id", "category", _is(Q(read_at__isnull=True)), _is(Q(seen_at__isnull=True))
            )
            changes = deltas_by_person(list(counted), sign=-1)
            deleted += doomed.delete()[1].get(InboxMessage._meta.label, 0)
            changes_commit(changes)
        batches += 1
    return deleted


def _is(condition: Q) -> ExpressionWrapper:
    return ExpressionWrapper(condition, output_field=BooleanField())


def inbox_events_purge(*, older_than_hours: int, batch_size: int = 5000) -> int:
    """Delete live events older than the replay window; returns how many were deleted. A client
    asking to resume from before the window is told to reload (`resync`)."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted = 0
    while True:
        ids = list(
            InboxEvent.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        deleted += InboxEvent.objects.filter(pk__in=ids).delete()[0]


def inbox_person_erase(*, audience: str, recipient_id: str) -> int:
    """Erase a person's inbox (PIPL): their messages, the presses of their buttons, and their
    live events, which carry the messages' text. The counter row stays, moved to zero by one
    `counts.changed` event, so that its `seq` goes on: a client that reconnects is told to
    reload rather than handed old numbers again. Returns how many messages went."""
    with transaction.atomic():
        if not InboxCounter.objects.select_for_update().filter(audience=audience, recipient_id=recipient_id).exists():
            return 0  # every write of a message moves the counter: no counter, no messages
        InboxEvent.objects.filter(audience=audience, recipient_id=recipient_id).delete()
        _, by_model = InboxMessage.objects.filter(audience=audience, recipient_id=recipient_id).delete()
        inbox_counter_recount(audience=audience, recipient_id=recipient_id)
    return by_model.get(InboxMessage._meta.label, 0)


def inbox_counter_recount(*, audience: str, recipient_id: str) -> bool:
    """Recompute one person's counter from their messages; returns whether it was wrong. A
    wrong counter is corrected and the new counts are pushed live (`counts.changed`)."""
    from .selectors import inbox_counts_truth

    with transaction.atomic():
        counter_lock(audience=audience, recipient_id=recipient_id)
        counter = InboxCounter.objects.get(audience=audience, recipient_id=recipient_id)
        truth = inbox_counts_truth(audience=audience, recipient_id=recipient_id)
        change = PersonChange(unseen=truth["unseen"] - counter.unseen)
        for category, n in truth["by_category"].items():
            change.unread[category] = n - getattr(counter, f"unread_{category}")
        if not change.counts_changed:
            return False
        changes_commit({(audience, recipient_id): change})
    return True
