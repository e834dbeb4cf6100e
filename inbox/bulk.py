"""One message to many inboxes at once (broadcasts): COPY, then one statement per chunk.

The rules are those of `services.inbox_message_put` for each person, applied to a whole chunk:
a new message counts as unread (its category) and unseen, moves the person's `seq` by one and is
recorded as a `message.created` live event carrying the message as the list answers it and the
counts after it; a source_key already there changes nothing. On PostgreSQL the owners go into a
temporary table with COPY, and one statement inserts the messages (ON CONFLICT (source_key) DO
NOTHING), moves the counters of the people whose row was new (one INSERT … ON CONFLICT DO UPDATE)
and inserts their live events; events are published after commit, as changes.py does.
Elsewhere (the embedded SQLite setup) the chunk goes through `inbox_messages_put_many`.
"""

import json

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .answers import message_answer
from .changes import CATEGORIES, COUNTER_TABLE, UNREAD_COLUMNS, events_publish
from .models import InboxEvent, InboxMessage
from .services import inbox_messages_put_many

MESSAGE_TABLE = InboxMessage._meta.db_table
EVENT_TABLE = InboxEvent._meta.db_table
STAGING = "inbox_bulk_owners"


def _counts_sql(alias: str) -> str:
    """The counts as `changes.counts_answer` gives them, built in SQL from a counter row."""
    by_category = ", ".join(f"'{c}', {alias}.unread_{c}" for c in CATEGORIES)
    total = " + ".join(f"{alias}.{column}" for column in UNREAD_COLUMNS)
    return (
        f"jsonb_build_object('total', {total}, 'by_category', jsonb_build_object({by_category}), "
        f"'unseen', {alias}.unseen)"
    )


def _statement(category: str, *, returning: bool) -> str:
    unread = [f"{'1' if c == category else '0'}" for c in CATEGORIES]
    return (
        "WITH new AS ("  # noqa: S608 (names are ours; values are parameters)
        f" INSERT INTO {MESSAGE_TABLE} (audience, recipient_id, category, title, body, link, actions, source_key,"
        " template_code, created_at)"
        " SELECT o.audience, o.recipient_id, %(category)s, %(title)s, %(body)s, %(link)s::jsonb, %(actions)s::jsonb,"
        f" o.source_key, %(template_code)s, %(now)s FROM {STAGING} o ORDER BY o.audience, o.recipient_id"
        " ON CONFLICT (source_key) DO NOTHING RETURNING id, audience, recipient_id"
        "), moved AS ("
        f" INSERT INTO {COUNTER_TABLE} AS c (audience, recipient_id, {', '.join(UNREAD_COLUMNS)}, unseen, seq)"
        f" SELECT audience, recipient_id, {', '.join(unread)}, 1, 1 FROM new ORDER BY audience, recipient_id"
        " ON CONFLICT (audience, recipient_id) DO UPDATE SET"
        f" unread_{category} = c.unread_{category} + 1, unseen = c.unseen + 1, seq = c.seq + 1"
        f" RETURNING c.audience, c.recipient_id, c.seq, {_counts_sql('c')} AS counts"
        ")"
        f" INSERT INTO {EVENT_TABLE} (audience, recipient_id, seq, kind, data, created_at)"
        " SELECT m.audience, m.recipient_id, m.seq, 'message.created',"
        " jsonb_build_object('message', %(answer)s::jsonb || jsonb_build_object('id', n.id), 'counts', m.counts),"
        " %(now)s FROM moved m JOIN new n ON n.audience = m.audience AND n.recipient_id = m.recipient_id"
        + (" RETURNING id, audience, recipient_id, seq, data" if returning else "")
    )


def inbox_message_put_to_many(*, owners: list[tuple[str, str, str]], content: dict) -> int:
    """Put the same message into each owner's inbox: owners are (audience, recipient_id,
    source_key); a source_key already there is left as it is. Returns how many rows were new.
    Runs in the caller's transaction (or its own); counters and live events in the same one."""
    if not owners:
        return 0
    if connection.vendor != "postgresql":
        rows = [{**content, "audience": a, "recipient_id": r, "source_key": k} for a, r, k in owners]
        with transaction.atomic():
            before = InboxMessage.objects.filter(source_key__in=[k for *_, k in owners]).count()
            inbox_messages_put_many(rows)
        return len({k for *_, k in owners}) - before
    now = timezone.now()
    category = content.get("category") or "system"
    if category not in CATEGORIES:
        raise ValueError(f"unknown inbox category {category!r}")
    link, actions = content.get("link") or {}, content.get("actions") or []
    answer = message_answer(
        InboxMessage(
            category=category,
            title=content["title"],
            body=content["body"],
            link=link,
            actions=actions,
            template_code=content.get("template_code", ""),
            created_at=now,
        )
    )
    answer.pop("id")
    publish = bool(settings.REDIS_URL)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} "
            "(audience text NOT NULL, recipient_id text NOT NULL, source_key text NOT NULL) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {STAGING}")
        with cursor.cursor.copy(f"COPY {STAGING} (audience, recipient_id, source_key) FROM STDIN") as copy:
            for owner in owners:
                copy.write_row(owner)
        cursor.execute(
            _statement(category, returning=publish),
            {
                "category": category,
                "title": content["title"],
                "body": content["body"],
                "link": json.dumps(link, ensure_ascii=False),
                "actions": json.dumps(actions, ensure_ascii=False),
                "template_code": content.get("template_code", ""),
                "now": now,
                "answer": json.dumps(answer, ensure_ascii=False),
            },
        )
        new = cursor.rowcount
        if publish:
            events = [
                InboxEvent(pk=pk, audience=a, recipient_id=r, seq=seq, kind="message.created", data=_json(data))
                for pk, a, r, seq, data in cursor.fetchall()
            ]
            transaction.on_commit(lambda: events_publish(events))
    return new


def _json(value):
    return json.loads(value) if isinstance(value, str) else value
