"""SQL statements per request on the intake path (issue 17): pinned for one event, and the same
for a batch of 100 as for a batch of 10: a batch costs O(1) statements, not one per event.

Through the API (scenarios' single endpoint, the project's batch endpoint), so a cross-layer test.
The catalog and the recipients are warm, as they are for all but the first event a process sees.
"""

import pytest

from channels.models import Delivery, DeliveryStatusChange
from scenarios.models import Event, Message
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)

# The idempotency read; BEGIN; the recipients (one read, every audience); the keys of
# the new events, messages and deliveries (one statement); the messages; the preferences; the
# deliveries; their status changes; the events with their answers; COMMIT. A batch's rows go by
# COPY, each counted as a statement. Reads before BEGIN see no transaction, like any request's.
# The channel accounts are kept with the catalog (scenarios/catalog.py), reloaded when it changes;
# the API key is kept per process for 2 s (notifycenter/auth.py), read here by the warm-up.
STATEMENTS = 10


def _event(n: int, doctors: int = 64) -> dict:
    event = paid_event(key=f"stmt-{n}")
    event["recipients"] = {"patient": ["p-42"], "doctor": [f"d-{n % doctors}"]}
    return event


@pytest.fixture
def handed_over(monkeypatch):
    """What the intake hands to the workers after commit; the workers' own statements (eager in
    tests) are not the intake's."""
    handed: list[tuple[int, str]] = []
    monkeypatch.setattr("channels.services.enqueue", handed.extend)
    return handed


@pytest.fixture
def warm(catalog, backend, handed_over, monkeypatch):
    """Every doctor of the batches known, the catalog loaded: the steady state being measured. The
    catalog is reloaded every MAX_AGE seconds (six statements), the API key read again after
    KEY_CACHE_SECONDS (one): not while a loaded machine runs this."""
    monkeypatch.setattr("scenarios.catalog.MAX_AGE", 600.0)
    monkeypatch.setattr("notifycenter.auth.KEY_CACHE_SECONDS", 600.0)
    response = backend.post("/api/v1/events/batch", [_event(10_000 + n) for n in range(64)], format="json")
    assert {r["status"] for r in response.json()["results"]} == {202}
    handed_over.clear()
    return backend


def test_one_event_costs_a_fixed_number_of_statements(warm, handed_over, django_assert_num_queries):
    with django_assert_num_queries(STATEMENTS):
        response = warm.post("/api/v1/events", _event(1), format="json")

    assert response.status_code == 202
    assert response.json()["message_count"] == 3
    queued = Delivery.objects.filter(event_ref=response.json()["event_id"], status="queued")
    assert len(handed_over) == queued.count() > 0


# A batch: as one event, without the deliveries (made by a worker after the commit,
# scenarios/expansion.py): no preferences read, no deliveries, no status changes.
BATCH_STATEMENTS = STATEMENTS - 3
# The worker's expansion of a batch's messages: BEGIN; the pending messages locked, their flag
# cleared and their columns returned (one UPDATE); their rules with templates; their recipients;
# the bindings; the keys of the deliveries; the preferences; the deliveries; their status
# changes; COMMIT.
EXPANSION_STATEMENTS = 10


@pytest.fixture
def pending(monkeypatch):
    """The messages the batch hands to the workers after commit, to expand them in the test."""
    handed: list[int] = []
    monkeypatch.setattr("scenarios.intake.expansion_enqueue", handed.extend)
    return handed


@pytest.mark.parametrize("size", [10, 100])
def test_a_batch_costs_the_same_statements_whatever_its_size(
    warm, handed_over, pending, django_assert_num_queries, size
):
    from scenarios.expansion import messages_expand

    before = (Event.objects.count(), Message.objects.count(), Delivery.objects.count())

    with django_assert_num_queries(BATCH_STATEMENTS):
        response = warm.post("/api/v1/events/batch", [_event(n) for n in range(size)], format="json")

    assert [r["status"] for r in response.json()["results"]] == [202] * size
    assert Event.objects.count() - before[0] == size
    assert Message.objects.count() - before[1] == 3 * size
    assert Delivery.objects.count() == before[2]
    assert len(pending) == Message.objects.filter(deliveries_pending=True).count() == 3 * size

    with django_assert_num_queries(EXPANSION_STATEMENTS):
        assert messages_expand(message_ids=pending) == 3 * size

    written = Delivery.objects.count() - before[2]
    assert written == 5 * size
    assert not Message.objects.filter(deliveries_pending=True).exists()
    assert len(handed_over) == Delivery.objects.filter(event_ref__in=_event_ids(response), status="queued").count() > 0
    # Each written delivery has its first timeline row, and each message its own recipient.
    assert DeliveryStatusChange.objects.filter(delivery__event_ref__in=_event_ids(response)).count() == written
    answers = [r["body"] for r in response.json()["results"]]
    for answer in answers:
        stored = Message.objects.filter(event_id=answer["event_id"]).order_by("id")
        assert [m["id"] for m in answer["messages"]] == [m.pk for m in stored]
        assert [m["recipient"] for m in answer["messages"]] == [m.recipient.external_id for m in stored]


def _event_ids(response) -> list[int]:
    return [r["body"]["event_id"] for r in response.json()["results"]]


# An event cancelling the subject's reminders: an event's statements up to its deliveries' status
# changes (as above, COMMIT aside), then the pending reminders locked and read, cancelled, their
# unsent deliveries looked up (a reminder has none yet), the event's answer written again with the
# count; COMMIT. No savepoint around the cancelling (channels/services.py _cancel_unsent).
CANCELLING = 14


def test_an_event_cancelling_reminders_costs_a_fixed_number_of_statements(warm, django_assert_num_queries):
    people = {"patient": ["p-42"], "doctor": ["d-17"]}
    booked = {
        "inquiry_id": "9101",
        "order_no": "IQ1",
        "consultation_type": "video",
        "patient_name": "张三",
        "appointment_time": "2030-01-10T15:00:00+08:00",
    }
    started = {"event": "inquiry.video_call_started", "recipients": people}
    for key, data in (("w-booked", {**booked, "inquiry_id": "1"}), ("w-started", {"inquiry_id": "1"})):
        scenario = "inquiry.appointment_booked" if key == "w-booked" else started["event"]
        body = {
            "event": scenario,
            "idempotency_key": key,
            "recipients": people,
            "data": {"doctor_name": "李明", **data},
        }
        assert warm.post("/api/v1/events", body, format="json").status_code == 202  # both scenarios loaded
    booking = {"event": "inquiry.appointment_booked", "idempotency_key": "s-booked", "data": booked}
    assert warm.post("/api/v1/events", {**booking, "recipients": people}, format="json").status_code == 202

    with django_assert_num_queries(CANCELLING):
        response = warm.post(
            "/api/v1/events",
            {**started, "idempotency_key": "s-started", "data": {"inquiry_id": "9101", "doctor_name": "李明"}},
            format="json",
        )

    assert response.status_code == 202 and response.json()["cancelled_reminders"] > 0
    assert Event.objects.get(pk=response.json()["event_id"]).answer == response.json()
