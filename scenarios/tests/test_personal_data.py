"""Personal data kept once: events keep recipient ids, the directory keeps the addresses; old
events go with the retention purge; one person's data is exported and erased on request."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from channels.models import ChangeSource, Delivery, DeliveryAttempt, DeliveryStatus, DeliveryStatusChange, Recipient
from inbox.models import InboxCounter, InboxEvent, InboxMessage
from inbox.selectors import inbox_counts, inbox_counts_truth
from inbox.services import inbox_message_put
from scenarios.models import Event, Message, MessageStatus
from scenarios.retention import events_purge
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "13812345678"
OPENID = "oOA-p42-openid-secret"


def with_inline_addresses():
    payload = paid_event()
    payload["recipients"]["patient"] = [{"id": "p-42", "phone": PHONE, "wechat_oa_openid": OPENID}]
    return payload


def test_an_event_keeps_recipient_ids_and_the_directory_the_addresses(catalog, backend):
    response = backend.post("/api/v1/events", with_inline_addresses(), format="json")
    assert response.status_code == 202, response.json()

    event = Event.objects.get()
    assert event.recipients == {"patient": ["p-42"], "doctor": ["d-17"]}
    stored = json.dumps([event.recipients, event.data, event.answer], ensure_ascii=False)
    assert PHONE not in stored and OPENID not in stored
    person = Recipient.objects.get(audience="patient", external_id="p-42")
    assert (person.phone, person.wechat_oa_openid) == (PHONE, OPENID)


def test_the_sms_code_flow_keeps_no_phone_on_the_event(catalog, fake_providers):
    from tests.clients import backend_client

    client = backend_client(scopes=("otp",))
    response = client.post(
        "/api/v1/otp",
        {"phone": PHONE, "purpose": "point.withdrawal_requested", "data": {"withdrawal_id": "W1", "amount": "3.00"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    event = Event.objects.get(pk=response.json()["event_id"])
    assert PHONE not in json.dumps(event.recipients) and PHONE[-4:] not in json.dumps(event.recipients)


def _age(event_ids, days):
    Event.objects.filter(pk__in=event_ids).update(received_at=timezone.now() - timedelta(days=days))


def test_the_retention_purge_takes_old_events_with_their_messages_deliveries_and_attempts(catalog, backend):
    old = backend.post("/api/v1/events", paid_event(), format="json").json()["event_id"]
    recent = backend.post("/api/v1/events", paid_event(), format="json").json()["event_id"]
    reminder = backend.post(
        "/api/v1/events",
        {
            **paid_event(),
            "event": "inquiry.appointment_booked",
            "data": {
                "inquiry_id": "9002",
                "consultation_type": "video",
                "order_no": "IQ2",
                "doctor_name": "李明",
                "patient_name": "张三",
                "department": "心内科",
                "appointment_time": (timezone.now() + timedelta(days=3)).isoformat(),
            },
        },
        format="json",
    )
    assert reminder.status_code == 202, reminder.json()
    waiting = reminder.json()["event_id"]
    assert Message.objects.filter(event_id=waiting, status=MessageStatus.SCHEDULED).exists()
    assert DeliveryAttempt.objects.filter(delivery__event_ref=old).exists()
    _age([old, waiting], days=200)

    assert events_purge(older_than_days=180) == 1

    assert set(Event.objects.values_list("pk", flat=True)) == {recent, waiting}
    assert not Message.objects.filter(event_id=old).exists()
    assert not Delivery.objects.filter(event_ref=old).exists()
    assert not DeliveryAttempt.objects.filter(delivery__event_ref=old).exists()
    assert Delivery.objects.filter(event_ref=recent).exists()
    assert events_purge(older_than_days=0) == 0


REGID = "push-reg-id-of-d17-0001"


def test_a_person_is_exported_then_erased(catalog, backend, capsys):
    payload = paid_event()
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": PHONE, "push_registration_ids": [REGID]}]
    assert backend.post("/api/v1/events", payload, format="json").status_code == 202
    assert InboxMessage.objects.filter(audience="doctor", recipient_id="d-17").exists()

    call_command("person", "export", "doctor", "d-17")
    exported = json.loads(capsys.readouterr().out)
    assert exported["directory"]["phone"] == PHONE
    assert exported["directory"]["push_registration_ids"] == [REGID]
    assert {d["channel"] for d in exported["deliveries"]} >= {"inbox", "app_push", "sms"}
    assert exported["messages"] and exported["inbox"]

    with pytest.raises(CommandError, match="--yes"):
        call_command("person", "erase", "doctor", "d-17")
    call_command("person", "erase", "doctor", "d-17", "--yes")
    result = json.loads(capsys.readouterr().out)
    assert result["inbox_deleted"] >= 1 and result["messages_emptied"] >= 1

    person = Recipient.objects.get(audience="doctor", external_id="d-17")
    assert (person.phone, person.push_registration_ids, person.name) == ("", [], "")
    assert not InboxMessage.objects.filter(audience="doctor", recipient_id="d-17").exists()
    left = json.dumps(
        [
            list(Delivery.objects.filter(recipient=person).values("address", "content")),
            list(DeliveryAttempt.objects.filter(delivery__recipient=person).values("raw_response", "error_message")),
            list(Message.objects.filter(recipient=person).values("rendered")),
        ],
        ensure_ascii=False,
    )
    assert PHONE not in left and REGID not in left
    push = Delivery.objects.get(recipient=person, channel="app_push")
    assert push.address and push.address != REGID and push.content == {}
    assert push.status != DeliveryStatus.QUEUED
    assert Delivery.objects.get(recipient=person, channel="sms").address == "138****5678"
    # The patient on the same event is untouched.
    assert InboxMessage.objects.filter(audience="patient", recipient_id="p-42").exists()
    assert Message.objects.filter(recipient__external_id="p-42").exclude(rendered={}).exists()

    with pytest.raises(CommandError, match="No data"):
        call_command("person", "export", "patient", "nobody")


def test_an_erasure_takes_the_live_events_and_leaves_the_counts_true(catalog, backend, capsys):
    """The live events carry the messages' text: they go with the messages. The counter goes
    to zero with one `counts.changed` and its seq goes on, so a new message counts one; the
    deliveries not yet sent are cancelled with a line in their timeline."""
    payload = paid_event()
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": PHONE}]
    assert backend.post("/api/v1/events", payload, format="json").status_code == 202
    title = InboxMessage.objects.get(audience="doctor", recipient_id="d-17").title
    before = InboxCounter.objects.get(audience="doctor", recipient_id="d-17")
    assert before.unseen >= 1 and InboxEvent.objects.filter(audience="doctor", recipient_id="d-17").exists()
    pending = Delivery.objects.filter(recipient__external_id="d-17").exclude(channel="inbox")
    pending.update(status=DeliveryStatus.QUEUED, not_before=timezone.now() + timedelta(hours=1))

    call_command("person", "erase", "doctor", "d-17", "--yes")
    result = json.loads(capsys.readouterr().out)
    assert result["inbox_deleted"] == 1 and result["deliveries_cancelled"] == pending.count() >= 1

    events = list(InboxEvent.objects.filter(audience="doctor", recipient_id="d-17"))
    assert [e.kind for e in events] == ["counts.changed"]
    assert title not in json.dumps(events[0].data, ensure_ascii=False)
    assert events[0].seq == before.seq + 1 and events[0].data["counts"]["total"] == 0
    doctor = {"audience": "doctor", "recipient_id": "d-17"}
    assert inbox_counts(**doctor) == inbox_counts_truth(**doctor)
    cancelled = DeliveryStatusChange.objects.filter(delivery__in=pending, status=DeliveryStatus.CANCELLED)
    assert {(c.source, c.code) for c in cancelled} == {(ChangeSource.OPERATOR, "erased")}
    assert cancelled.count() == pending.count()
    # Another person's inbox is untouched, and a new message counts from zero.
    assert InboxEvent.objects.filter(audience="patient", recipient_id="p-42").exists()
    inbox_message_put(**doctor, title="新消息", body="正文", category="system", link={}, source_key="after-erase")
    assert inbox_counts(**doctor)["total"] == 1


def test_erasing_someone_without_an_inbox_makes_no_counter(catalog, backend, capsys):
    Recipient.objects.create(audience="doctor", external_id="d-99", phone=PHONE)
    call_command("person", "erase", "doctor", "d-99", "--yes")
    assert json.loads(capsys.readouterr().out)["inbox_deleted"] == 0
    assert not InboxCounter.objects.filter(audience="doctor", recipient_id="d-99").exists()
