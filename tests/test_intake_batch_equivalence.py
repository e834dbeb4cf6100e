"""A batch stores exactly what the same events sent one by one store (issue 17's lean batch path:
rules decided once per distinct data, rows written by COPY without model instances).

Cross-layer (scenarios' intake, channels' deliveries, the project's batch endpoint). The workers'
side is left out: what is handed over after commit is only collected.
"""

import pytest
import redis
from django.conf import settings
from django.db import connection

from channels.models import Delivery, Recipient
from scenarios.models import Event, Message, PlanEnrollment
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)

FUTURE = "2030-01-10T15:00:00+08:00"
MOVED = "2030-01-11T09:30:00+08:00"


def _events() -> list:
    """Scenarios, templates and conditions mixed; the same data for different people and different
    data for the same rule; reminders planned, cancelled and moved within the batch; a replay, a
    conflict and bad items; an inline phone."""
    other_doctor = paid_event(key="eq-3", doctor_name="王芳")
    other_doctor["recipients"] = {"patient": [{"id": "p-77", "phone": "13800138077"}], "doctor": ["d-18"]}
    conflict = paid_event(key="eq-1", amount="99.00")
    booked = {"inquiry_id": "9101", "order_no": "IQ1", "consultation_type": "video", "patient_name": "张三"}
    people = {"patient": ["p-42"], "doctor": ["d-17"]}
    return [
        paid_event(key="eq-1"),
        {**paid_event(key="eq-2"), "recipients": {"patient": ["p-43"], "doctor": ["d-17"]}},
        paid_event(key="eq-phone", consultation_type="phone"),
        other_doctor,
        _item("inquiry.appointment_booked", "eq-4", {**booked, "appointment_time": FUTURE}, people),
        _item(
            "inquiry.appointment_booked", "eq-5", {**booked, "inquiry_id": "9102", "appointment_time": FUTURE}, people
        ),
        _item("inquiry.video_call_started", "eq-6", {"inquiry_id": "9101", "doctor_name": "李明"}, people),
        _item("inquiry.appointment_changed", "eq-7", {"inquiry_id": "9102", "appointment_time": MOVED}, people),
        _item(
            "plan.enrolled",
            "eq-8",
            {"plan": "post_consultation", "enrollment_id": "en-1", "start_date": "2030-01-01"},
            {"patient": ["p-42"]},
        ),
        paid_event(key="eq-1"),  # a replay inside the batch
        conflict,
        paid_event(key="eq-bad", consultation_type="letter"),
        _item("no.such_event", "eq-unknown", {}, {}),
        {"event": "inquiry.paid", "data": {}},
    ]


def _item(event: str, key: str, data: dict, recipients: dict) -> dict:
    return {"event": event, "idempotency_key": key, "data": data, "recipients": recipients}


@pytest.fixture
def handed_over(monkeypatch):
    handed: list = []
    monkeypatch.setattr("channels.services.enqueue", handed.extend)
    # A batch's deliveries are made by the expansion task (eager here), which sends them itself.
    monkeypatch.setattr("scenarios.tasks.deliver_now", handed.extend)
    return handed


def _answer(result: dict) -> tuple:
    """An item's answer without what differs between two runs: keys and the clock."""
    body = dict(result["body"])
    for key in ("event_id",):
        body.pop(key, None)
    if "messages" in body:
        body["messages"] = [
            {k: v for k, v in m.items() if k != "id" and (k != "due_at" or m["scheduled"])} for m in body["messages"]
        ]
    if isinstance(body.get("plan"), dict):
        body["plan"] = {k: v for k, v in body["plan"].items() if k != "enrollment_id"}
    return result["status"], body


def _stored() -> dict:
    """Every row the intake wrote, keyed by what it means, not by its keys or its times."""
    keys = {e.pk: e.idempotency_key for e in Event.objects.all()}
    messages, names = [], {}
    for m in Message.objects.select_related("rule", "template", "recipient").order_by("pk"):
        scheduled = m.status == "scheduled"
        names[m.pk] = (keys[m.event_id], m.rule.code if m.rule else m.template.code, m.recipient.external_id)
        messages.append(
            (
                *names[m.pk],
                m.template.code,
                m.audience,
                m.subject_type,
                m.subject_id,
                m.status,
                m.status_reason.split(" #")[0],  # "moved by … #<event id>"
                m.due_at if scheduled else None,
                m.rendered,
                m.data_overrides,
                m.dispatched_at is None,
                m.chain_pending,
                m.dedup_key,
            )
        )
    deliveries = []
    for d in Delivery.objects.order_by("pk"):
        changes = [(c.status, c.source, c.code) for c in d.status_changes.order_by("pk")]
        deliveries.append(
            (
                names.get(d.message_ref),
                keys.get(d.event_ref),
                d.channel,
                d.status,
                d.last_error_code,
                d.last_error_message,
                d.address,
                d.content,
                d.template_code,
                d.account_id,
                d.route_reason,
                d.enqueued_at is None,
                d.finished_at is None,
                d.recipient.external_id,
                changes,
            )
        )
    events = [
        (e.idempotency_key, e.scenario.code, e.subject_type, e.subject_id, e.data, e.recipients, e.request_hash)
        for e in Event.objects.select_related("scenario").order_by("idempotency_key")
    ]
    return {"events": events, "messages": sorted(messages, key=repr), "deliveries": sorted(deliveries, key=repr)}


def _forget_the_first_run() -> None:
    Delivery.objects.all().delete()
    PlanEnrollment.objects.all().delete()
    Message.objects.all().delete()
    Event.objects.all().delete()
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("nc:*"):  # caps and de-duplication counted by the first run
        client.delete(key)


def test_a_batch_stores_what_the_same_events_one_by_one_store(catalog, backend, handed_over):
    events = _events()

    response = backend.post("/api/v1/events/batch", events, format="json")
    assert response.status_code == 200
    batch_answers = [_answer(r) for r in response.json()["results"]]
    batch_rows, batch_handed = _stored(), len(handed_over)

    _forget_the_first_run()
    handed_over.clear()
    single_answers = []
    for event in events:
        answer = backend.post("/api/v1/events", event, format="json")
        single_answers.append(_answer({"status": answer.status_code, "body": answer.json()}))
    single_rows = _stored()

    assert [status for status, _ in batch_answers] == [202] * 9 + [200, 409, 400, 400, 400]
    assert batch_answers == single_answers
    assert batch_rows == single_rows
    assert batch_handed == len(handed_over) > 0
    cancelled = [m for m in batch_rows["messages"] if m[0] == "eq-4" and m[7] == "cancelled"]
    moved = [m for m in batch_rows["messages"] if m[0] == "eq-5" and m[8].startswith("moved by")]
    assert cancelled and moved  # the batch's own later events reached its earlier reminders


def test_an_inline_phone_in_a_batch_stays_encrypted(catalog, backend, handed_over):
    event = paid_event(key="eq-sealed")
    event["recipients"] = {"patient": [{"id": "p-sealed", "phone": "13800138099"}], "doctor": ["d-17"]}

    response = backend.post("/api/v1/events/batch", [event, paid_event(key="eq-other")], format="json")

    assert [r["status"] for r in response.json()["results"]] == [202, 202]
    person = Recipient.objects.get(audience="patient", external_id="p-sealed")
    with connection.cursor() as cursor:
        cursor.execute("SELECT phone FROM channels_recipient WHERE id = %s", [person.pk])
        (stored,) = cursor.fetchone()
    assert stored and "13800138099" not in stored and person.phone == "13800138099"
    theirs = Delivery.objects.filter(recipient=person)
    assert theirs.exists() and all("13800138099" not in d.address for d in theirs)
    assert not Delivery.objects.filter(content__icontains="13800138099").exists()


def test_rows_written_by_copy_carry_every_column_the_orm_would_set(catalog, backend, handed_over):
    response = backend.post("/api/v1/events/batch", [paid_event(key="eq-a"), paid_event(key="eq-b")], format="json")

    (event_id, _) = [r["body"]["event_id"] for r in response.json()["results"]]
    event = Event.objects.get(pk=event_id)
    assert event.received_at is not None and event.answer == response.json()["results"][0]["body"]
    for message in Message.objects.filter(event=event):
        fresh = Message(event=event, template=message.template, recipient=message.recipient)  # the ORM's defaults
        assert (message.data_overrides, message.chain_pending, message.dedup_key, message.plan_step_id) == (
            fresh.data_overrides,
            fresh.chain_pending,
            fresh.dedup_key,
            fresh.plan_step_id,
        )
        assert message.created_at is not None and message.dispatched_at >= event.received_at
    for delivery in Delivery.objects.filter(event_ref=event_id):
        fresh = Delivery()
        assert (delivery.attempt_count, delivery.claim, delivery.lease_until, delivery.duplicate_of_id) == (
            fresh.attempt_count,
            fresh.claim,
            fresh.lease_until,
            fresh.duplicate_of_id,
        )
        assert delivery.provider_message_id == "" and delivery.created_at == delivery.updated_at is not None
        assert delivery.status_changes.count() == 1
