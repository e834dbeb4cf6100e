"""Local sends (the station inbox) in one transaction per chunk: the people's counter rows, which
every chunk for the same person waits for, are written last, after the engine's bookkeeping, so
their locks last from there to the commit only (channels/sending.py `_send_locally`,
inbox/changes.py `changes_last`)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, Recipient
from channels.sending import deliveries_send
from channels.services import DeliveryRequest, deliveries_create
from inbox.models import InboxCounter, InboxEvent, InboxMessage

pytestmark = pytest.mark.django_db(transaction=True)


def queued_inbox(people: list[Recipient], per_person: int) -> list[int]:
    rows = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="inbox",
                recipient=person,
                idempotency_key=f"m{i}:{person.external_id}:inbox",
                not_before=timezone.now() + timedelta(hours=1),  # not sent by an eager worker
                content={"title": f"消息{i}", "body": "正文", "category": "consultation"},
            )
            for person in people
            for i in range(per_person)
        ]
    )
    Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(not_before=timezone.now())
    return [r.pk for r in rows]


def test_the_counters_are_the_chunks_last_write():
    duty = Recipient.objects.create(audience="operations", external_id="ops-duty")
    patient = Recipient.objects.create(audience="patient", external_id="p-1")
    ids = queued_inbox([duty, patient], per_person=3)

    with CaptureQueriesContext(connection) as captured:
        deliveries_send(delivery_ids=ids)

    writes = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "COPY"))
    ]
    counters = [i for i, sql in enumerate(writes) if "inbox_inboxcounter" in sql]
    assert len(counters) == 1  # one upsert for both people, the chunk's changes merged
    later = writes[counters[0] + 1 :]
    assert all("inbox_inboxevent" in sql for sql in later), later  # the live events it numbers, then commit
    assert any("channels_deliverystatuschange" in sql for sql in writes[: counters[0]])
    assert any(sql.startswith("UPDATE") and "channels_delivery" in sql for sql in writes[: counters[0]])
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {DeliveryStatus.SENT}
    counts = {
        (c.audience, c.recipient_id): (c.unread_consultation, c.unseen, c.seq) for c in InboxCounter.objects.all()
    }
    assert counts == {("operations", "ops-duty"): (3, 3, 3), ("patient", "p-1"): (3, 3, 3)}
    assert sorted(InboxEvent.objects.filter(recipient_id="ops-duty").values_list("seq", flat=True)) == [1, 2, 3]


def test_a_chunk_that_fails_after_the_inbox_writes_leaves_no_count(monkeypatch):
    duty = Recipient.objects.create(audience="operations", external_id="ops-duty")
    ids = queued_inbox([duty], per_person=2)

    def broken(**kwargs):
        raise RuntimeError("the database went away mid-chunk")

    monkeypatch.setattr("channels.sending.status_changes_record", broken)
    with pytest.raises(RuntimeError):
        deliveries_send(delivery_ids=ids)
    assert not InboxMessage.objects.exists() and not InboxCounter.objects.filter(seq__gt=0).exists()
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {DeliveryStatus.QUEUED}
