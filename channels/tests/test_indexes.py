"""The indexes every new delivery and message writes into are the ones something reads by; the
lookups the dropped ones served use an index that stays (channels 0012, scenarios 0014); the
timeline's (status, at) index served no query at all (channels 0013)."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexes(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return dict(cursor.fetchall())


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tables this small would be scanned
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.mark.parametrize(
    ("table", "gone", "lookup", "served_by"),
    [
        (
            "channels_delivery",
            "channels_delivery_recipient_id_5ef04290",
            "SELECT id FROM channels_delivery WHERE recipient_id IN (1, 2)",
            "delivery_recent",
        ),
        (
            "channels_delivery",
            "channels_delivery_duplicate_of_id_6a7a0e10",
            "SELECT id FROM channels_delivery WHERE duplicate_of_id IN (1, 2)",
            "delivery_duplicate_of",
        ),
        (
            "scenarios_message",
            "scenarios_message_plan_step_id_dc2072cc",
            "SELECT id FROM scenarios_message WHERE plan_step_id IN (1, 2)",
            "message_unique_plan_occurrence",
        ),
    ],
)
def test_a_dropped_index_is_gone_and_its_lookup_uses_one_that_stays(table, gone, lookup, served_by):
    indexes = _indexes(table)
    assert gone not in indexes
    assert served_by in indexes
    assert served_by in _plan(lookup)


def test_the_timeline_keeps_its_key_its_delivery_index_and_the_outbox_index_only():
    assert set(_indexes("channels_deliverystatuschange")) == {
        "channels_deliverystatuschange_pkey",
        "channels_deliverystatuschange_delivery_id_b9b3bd05",
        "status_change_unpublished",
    }
    assert "status_change_unpublished" in _plan(
        "SELECT id FROM channels_deliverystatuschange WHERE published_at IS NULL ORDER BY id LIMIT 10"
    )


def test_the_duplicate_index_holds_only_rows_that_have_one():
    assert "WHERE (duplicate_of_id IS NOT NULL)" in _indexes("channels_delivery")["delivery_duplicate_of"]


def test_the_foreign_keys_stay():
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE contype = 'f'")
        names = [name for (name,) in cursor.fetchall()]
    columns = ("channels_delivery_recipient_id", "channels_delivery_duplicate_of_id", "scenarios_message_plan_step_id")
    for column in columns:
        assert any(name.startswith(column + "_") for name in names), column
