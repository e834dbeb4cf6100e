"""The list page's reader (selectors.inbox_page) selects what the ORM's inbox_message_list selects,
for every filter, on PostgreSQL's raw statement and on the ORM branch other databases take."""

import itertools
import random

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from inbox.models import Category, InboxMessage
from inbox.selectors import PageRow, inbox_message_list, inbox_page

FIELDS = PageRow._fields[1:]


@pytest.fixture
def messages():
    rng = random.Random(3)
    now = timezone.now()
    rows = []
    pay = [{"key": "pay", "label": "去支付", "style": "primary", "link": {"h5": "/pay"}}]
    for i in range(60):
        owner = ("patient", "p-1") if i % 4 else rng.choice([("patient", "p-2"), ("doctor", "p-1")])
        rows.append(
            InboxMessage(
                audience=owner[0],
                recipient_id=owner[1],
                category=rng.choice(Category.values),
                title=f"标题 {i}",
                body="正文",
                link={"target": "order", "h5": f"/o/{i}"} if i % 3 else {},
                actions=pay if i % 5 == 0 else [],
                template_code="pt_x",
                seen_at=now if rng.random() < 0.5 else None,
                read_at=now if rng.random() < 0.4 else None,
                archived_at=now if rng.random() < 0.2 else None,
                deleted_at=now if rng.random() < 0.1 else None,
            )
        )
    return InboxMessage.objects.bulk_create(rows)


def _orm(before_id=None, limit=20, **filters):
    return [
        PageRow(m.pk, *(getattr(m, f) for f in FIELDS))
        for m in inbox_message_list(audience="patient", recipient_id="p-1", before_id=before_id, **filters)[:limit]
    ]


FILTERS = [
    dict(zip(("category", "unread", "seen", "archived"), combo, strict=True))
    for combo in itertools.product([None, "order"], [None, True, False], [None, True, False], [False, True, None])
]


@pytest.mark.django_db
@pytest.mark.parametrize("vendor", ["postgresql", "other"])
def test_every_filter_reads_what_the_orm_reads(messages, vendor, monkeypatch):
    assert connection.vendor == "postgresql"
    if vendor == "other":
        monkeypatch.setattr(connection, "vendor", "sqlite")
    middle = sorted(m.pk for m in messages)[30]
    checked = 0
    for filters in FILTERS:
        for before_id, limit in ((None, 20), (middle, 7), (None, 100)):
            expected = _orm(before_id=before_id, limit=limit, **filters)
            got = inbox_page(audience="patient", recipient_id="p-1", before_id=before_id, limit=limit, **filters)
            assert got == expected, (filters, before_id, limit)
            checked += bool(expected)
    assert checked > 50  # the data gives most filters something to read


@pytest.mark.django_db
def test_a_page_holds_json_and_times_as_the_model_does(messages):
    first = inbox_page(audience="patient", recipient_id="p-1", limit=100, archived=None)
    assert first and all(isinstance(row.link, dict) and isinstance(row.actions, list) for row in first)
    assert any(row.actions and row.actions[0]["label"] == "去支付" for row in first)
    assert all(row.created_at.tzinfo is not None for row in first)
    assert [row.pk for row in first] == sorted((row.pk for row in first), reverse=True)


@pytest.mark.django_db
def test_source_key_is_unique_without_a_like_index():
    """The unique constraint stays (retried deliveries make no second row); the LIKE index that
    `unique=True` would add, and every write would maintain, is not there."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [InboxMessage._meta.db_table])
        definitions = [d for (d,) in cursor.fetchall()]
    assert [d for d in definitions if "(source_key)" in d and "UNIQUE" in d]
    assert not [d for d in definitions if "pattern_ops" in d], definitions
    InboxMessage.objects.create(audience="patient", recipient_id="p-1", title="t", body="b", source_key="k")
    with pytest.raises(IntegrityError):
        InboxMessage.objects.create(audience="patient", recipient_id="p-2", title="t", body="b", source_key="k")
