"""channels/rows.py writes rows as bulk_create would: ids back, defaults and auto_now applied, the
column's limits enforced (never a value cut short), JSON and time zones kept."""

from datetime import datetime, timedelta

import pytest
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from channels.rows import column_update, rows_insert

pytestmark = pytest.mark.django_db


def _delivery(n: int, **fields) -> Delivery:
    return Delivery(
        channel="inbox",
        idempotency_key=f"rows-{n}",
        not_before=timezone.now(),
        content={"title": '标题 "引号" \\ 反斜杠', "n": n, "nested": [None, True, 1.5]},
        **fields,
    )


def test_rows_come_back_with_ids_and_read_back_as_written():
    naive = datetime(2026, 11, 25, 15, 0)  # local time (Asia/Shanghai), as Django reads a naive one
    rows = rows_insert([_delivery(1), _delivery(2, finished_at=naive, attempt_count=3, address="")])

    assert [r.pk for r in rows] == sorted(r.pk for r in rows) and all(rows[i].pk for i in range(2))
    first, second = (Delivery.objects.get(pk=r.pk) for r in rows)
    assert first.content == rows[0].content
    assert first.status == DeliveryStatus.QUEUED and first.attempt_count == 0  # the model's defaults
    assert first.created_at is not None and first.finished_at is None and first.account_id is None
    assert second.finished_at == timezone.make_aware(naive, timezone.get_default_timezone())
    assert second.attempt_count == 3
    assert rows[0]._state.adding is False


def test_a_value_longer_than_its_column_is_refused_not_cut():
    with pytest.raises(DataError), transaction.atomic():
        rows_insert([_delivery(1, template_code="t" * 65)])

    assert not Delivery.objects.exists()


def test_a_unique_clash_is_an_integrity_error_as_with_bulk_create():
    rows_insert([_delivery(1)])

    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert([_delivery(1)])


def test_one_column_of_many_rows_set_by_id():
    rows = rows_insert([_delivery(n) for n in range(3)])
    later = timezone.now() + timedelta(hours=1)

    column_update(Delivery, "content", {rows[0].pk: {"a": 1}, rows[2].pk: {"b": [2]}})
    column_update(Delivery, "not_before", {rows[1].pk: later})

    stored = {d.pk: d for d in Delivery.objects.all()}
    assert stored[rows[0].pk].content == {"a": 1}
    assert stored[rows[1].pk].content == rows[1].content and stored[rows[1].pk].not_before == later
    assert stored[rows[2].pk].content == {"b": [2]}
