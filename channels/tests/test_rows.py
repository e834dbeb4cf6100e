"""channels/rows.py writes rows as bulk_create would: ids back, defaults and auto_now applied, the
column's limits enforced (never a value cut short), JSON and time zones kept."""

from datetime import datetime, timedelta

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, DeliveryStatusChange, Recipient
from channels.rows import column_update, ids_reserve, rows_insert, rows_where, values_copy, values_insert

pytestmark = pytest.mark.django_db


def _delivery(n: int, **fields) -> Delivery:
    return Delivery(
        channel="inbox",
        idempotency_key=f"rows-{n}",
        not_before=timezone.now(),
        content={"title": '标题 "引号" \\ 反斜杠', "n": n, "nested": [None, True, 1.5]},
        **fields,
    )


@pytest.fixture(params=["values", "unnest"])
def statement(request, monkeypatch):
    """Both statements rows.py writes with: a VALUES list (a few rows) and unnest (more)."""
    monkeypatch.setattr("channels.rows.FEW_PARAMS", 10_000 if request.param == "values" else 0)
    return request.param


def test_rows_come_back_with_ids_and_read_back_as_written(statement):
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


def test_plain_rows_take_the_defaults_of_the_fields_they_leave_out(statement):
    delivery = rows_insert([_delivery(1)])[0]
    at = timezone.now()
    values_insert(
        DeliveryStatusChange,
        [
            {"delivery_id": delivery.pk, "status": "queued", "at": at, "source": "create"},
            {"delivery_id": delivery.pk, "status": "sent", "at": at, "source": "send", "code": "ok", "applied": False},
        ],
    )

    first, second = DeliveryStatusChange.objects.filter(delivery=delivery).order_by("pk")
    assert (first.status, first.code, first.detail, first.applied, first.at) == ("queued", "", "", True, at)
    assert (second.status, second.code, second.applied) == ("sent", "ok", False)


def test_fields_of_our_own_are_prepared_by_themselves(statement):
    """An address is stored encrypted and its keyed hash computed, as the ORM's save would."""
    (person,) = rows_insert([Recipient(audience="patient", external_id="p-sealed", phone="13800138000")])

    with connection.cursor() as cursor:
        cursor.execute("SELECT phone, phone_hash FROM channels_recipient WHERE id = %s", [person.pk])
        stored, digest = cursor.fetchone()
    assert stored and "13800138000" not in stored
    assert Recipient.objects.get(phone_hash=digest).phone == "13800138000"


def test_rows_read_as_the_orm_reads_them():
    person = Recipient.objects.create(audience="patient", external_id="p-rows", phone="13800138000")
    Recipient.objects.create(audience="doctor", external_id="p-rows")

    (found,) = rows_where(Recipient, "audience = %s AND external_id = ANY(%s)", ["patient", ["p-rows", "x"]])
    (narrow,) = rows_where(Recipient, "id = %s", [person.pk], fields=("external_id",))

    assert found.pk == person.pk and found.phone == "13800138000"  # decrypted as the ORM's would be
    assert found.push_registration_ids == [] and found._state.adding is False
    assert narrow.external_id == "p-rows" and narrow.get_deferred_fields() >= {"phone", "audience"}


def test_one_column_of_many_rows_set_by_id(statement):
    rows = rows_insert([_delivery(n) for n in range(3)])
    later = timezone.now() + timedelta(hours=1)

    column_update(Delivery, "content", {rows[0].pk: {"a": 1}, rows[2].pk: {"b": [2]}})
    column_update(Delivery, "not_before", {rows[1].pk: later})

    stored = {d.pk: d for d in Delivery.objects.all()}
    assert stored[rows[0].pk].content == {"a": 1}
    assert stored[rows[1].pk].content == rows[1].content and stored[rows[1].pk].not_before == later
    assert stored[rows[2].pk].content == {"b": [2]}


def test_rows_by_copy_under_reserved_keys_read_back_as_written():
    """A batch's rows: keys reserved first (one statement), then one COPY per table, no instance."""
    (first_id, second_id), none = ids_reserve((Delivery, 2), (DeliveryStatusChange, 0))
    at = timezone.now()
    naive = datetime(2026, 11, 25, 15, 0)
    base = {"channel": "inbox", "not_before": at, "content": {"title": '标题 "引号" \\', "n": [None, True, 1.5]}}

    values_copy(
        Delivery,
        [
            {**base, "id": first_id, "idempotency_key": "copy-1", "status": DeliveryStatus.SKIPPED},
            {**base, "id": second_id, "idempotency_key": "copy-2", "finished_at": naive, "attempt_count": 2},
        ],
        now=at,
    )
    values_copy(DeliveryStatusChange, [{"delivery_id": first_id, "status": "queued", "at": at, "source": "create"}])

    assert none == [] and second_id > first_id
    first, second = Delivery.objects.filter(pk__in=[first_id, second_id]).order_by("pk")
    assert first.content == base["content"] and first.status == "skipped" and type(first.status) is str
    assert (first.attempt_count, first.claim, first.account_id) == (0, "", None)  # the model's defaults
    assert first.created_at == first.updated_at == at  # automatic times: the caller's `now`
    assert second.status == DeliveryStatus.QUEUED and second.attempt_count == 2
    assert second.finished_at == timezone.make_aware(naive, timezone.get_default_timezone())
    (change,) = DeliveryStatusChange.objects.filter(delivery_id=first_id)
    assert change.applied is True and change.code == ""


def test_a_copy_is_one_counted_statement_and_refuses_what_bulk_create_refuses():
    row = {"channel": "inbox", "not_before": timezone.now(), "idempotency_key": "copy-clash"}
    with CaptureQueriesContext(connection) as statements:
        values_copy(Delivery, [row, {**row, "idempotency_key": "copy-other"}], now=timezone.now())

    assert len(statements) == 1 and statements[0]["sql"].startswith("COPY")
    with pytest.raises(IntegrityError), transaction.atomic():
        values_copy(Delivery, [row], now=timezone.now())
    with pytest.raises(DataError), transaction.atomic():
        values_copy(Delivery, [{**row, "idempotency_key": "copy-long", "template_code": "t" * 65}], now=timezone.now())
    assert Delivery.objects.count() == 2


def test_a_copy_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="phone_hash"):
        values_copy(Recipient, [{"audience": "patient", "external_id": "p-copy", "phone": "13800138000"}], now=None)
    with pytest.raises(ValueError, match="now"):
        values_copy(Delivery, [{"channel": "inbox", "not_before": timezone.now(), "idempotency_key": "copy-now"}])
