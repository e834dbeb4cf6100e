import pytest
from rest_framework.test import APIClient

from channels.models import Delivery, DeliveryStatus, Recipient
from inbox.models import InboxMessage
from scenarios.models import Event, Message, MessageStatus
from tests.clients import backend_client
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, payload):
    return client.post("/api/v1/events", payload, format="json")


def stored_counts():
    return (Event.objects.count(), Message.objects.count(), Delivery.objects.count(), Recipient.objects.count())


def test_paid_video_consultation_tells_doctor_patient_and_operations(catalog, backend):
    response = post(backend, paid_event(consultation_type="video"))

    assert response.status_code == 202, response.json()
    answer = response.json()
    assert answer["event"] == "inquiry.paid"
    assert answer["subject"] == {"type": "inquiry", "id": "9001"}
    planned = {(m["audience"], m["recipient"], m["template"]) for m in answer["messages"]}
    assert planned == {
        ("doctor", "d-17", "dc_inquiry_0000001"),
        ("patient", "p-42", "pt_inquiry_0000001"),
        ("operations", "ops-duty", "yy_inquiry_0000002"),
    }
    assert answer["skipped_rules"] == []
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.DISPATCHED}


def test_a_message_is_never_dispatched_before_its_event_was_received(catalog, backend):
    """The event's receipt time is set as it is inserted, after intake read its clock: a message
    dispatched at that earlier reading would read as sent before its event arrived (the event's
    record listed them out of order when a second turned in between)."""
    assert post(backend, paid_event(consultation_type="video")).status_code == 202

    event = Event.objects.get()
    dispatched = list(Message.objects.filter(event=event).values_list("dispatched_at", flat=True))
    assert dispatched and all(at >= event.received_at for at in dispatched)


def test_text_consultation_does_not_tell_operations_and_says_so(catalog, backend):
    response = post(backend, paid_event(consultation_type="text"))

    assert response.status_code == 202
    answer = response.json()
    assert {m["audience"] for m in answer["messages"]} == {"doctor", "patient"}
    assert answer["skipped_rules"] == [{"rule": "ops_phone_video_booked", "reason": "condition_not_met"}]


def test_inbox_deliveries_are_sent_and_unbuilt_channels_are_skipped_honestly(catalog, backend):
    post(backend, paid_event(consultation_type="text"))

    by_channel = {(d.template_code, d.channel): d for d in Delivery.objects.all()}
    patient_inbox = by_channel[("pt_inquiry_0000001", "inbox")]
    assert patient_inbox.status == DeliveryStatus.SENT
    assert patient_inbox.attempts.get().outcome == "sent"
    message = InboxMessage.objects.get(audience="patient", recipient_id="p-42")
    assert message.title == "问诊支付成功"
    assert message.body == "您已成功支付李明医生的问诊费用50.00元，医生接诊后将第一时间通知您。"
    assert message.category == "consultation"
    assert message.link["mini_program"] == "/pages/inquiry/detail?inquiryId=9001"

    push = by_channel[("dc_inquiry_0000001", "app_push")]
    # The doctor has no push registration id in the directory yet.
    assert (push.status, push.last_error_code) == (DeliveryStatus.SKIPPED, "no_address")


def test_a_channel_without_a_backend_is_skipped_with_channel_not_implemented(catalog, backend, monkeypatch):
    from channels import providers

    monkeypatch.delitem(providers.BACKENDS, "sms")  # as for a channel whose backend is not written yet
    payload = paid_event(consultation_type="text")
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": "13812345678"}]

    post(backend, payload)

    sms = Delivery.objects.get(channel="sms")
    assert sms.status == DeliveryStatus.SKIPPED
    assert sms.last_error_code == "channel_not_implemented"
    assert sms.last_error_message == "No provider backend for the channel sms yet."
    assert sms.finished_at is not None
    assert Recipient.objects.get(audience="doctor", external_id="d-17").phone == "13812345678"


def test_same_key_and_body_answers_the_first_answer_again(catalog, backend):
    payload = paid_event(key="order-1-paid")
    first = post(backend, payload)
    again = post(backend, payload)

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert Event.objects.count() == 1
    assert Message.objects.count() == 3


def test_same_key_with_another_body_is_a_conflict(catalog, backend):
    post(backend, paid_event(key="order-1-paid"))
    response = post(backend, paid_event(key="order-1-paid", amount="99.00"))

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert response.json()["fields"] == {"idempotency_key": ["already used with a different body"]}


def test_unknown_event_is_rejected_and_nothing_is_stored(catalog, backend):
    before = stored_counts()
    response = post(backend, {**paid_event(), "event": "inquiry.teleported"})

    assert response.status_code == 400
    assert response.json() == {
        "code": "unknown_event",
        "message": "No scenario for the event 'inquiry.teleported'.",
        "fields": {"event": ["unknown"]},
    }
    assert stored_counts() == before


def test_missing_envelope_fields_are_named(catalog, backend):
    response = post(backend, {"data": {}})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["fields"]) == {"event", "idempotency_key"}


def test_data_that_breaks_the_scenario_schema_names_each_field_path(catalog, backend):
    before = stored_counts()
    payload = paid_event(consultation_type="letter", amount="fifty")
    del payload["data"]["patient_name"]

    response = post(backend, payload)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_data"
    assert set(body["fields"]) == {"data.consultation_type", "data.amount", "data.patient_name"}
    assert stored_counts() == before


def test_a_rule_without_recipients_rejects_the_event(catalog, backend):
    payload = paid_event()
    del payload["recipients"]["doctor"]

    response = post(backend, payload)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_event"
    assert response.json()["fields"] == {
        "recipients.doctor": ["The rule doctor_accept_reminder needs at least one doctor."]
    }
    assert Event.objects.count() == 0


def test_malformed_json_gets_the_error_shape(catalog, backend):
    response = backend.post("/api/v1/events", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_a_wrong_api_key_is_401_and_a_missing_scope_403(catalog, backend):
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Api-Key nc_deadbeef_not-a-real-key")
    response = post(stranger, paid_event())
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"

    reader = backend_client(client="reader", scopes=("inbox-read",))
    response = post(reader, paid_event())
    assert response.status_code == 403
    assert response.json()["code"] == "missing_scope"

    response = post(APIClient(), paid_event())
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert Event.objects.count() == 0


def test_event_detail_shows_each_delivery_and_only_to_its_client(catalog, backend):
    event_id = post(backend, paid_event(consultation_type="text")).json()["event_id"]

    detail = backend.get(f"/api/v1/events/{event_id}").json()

    assert detail["received_at"].endswith("+08:00")  # the hospital's time, as in the intake answer
    assert detail["messages"][0]["due_at"].endswith("+08:00")
    statuses = {(m["template"], d["channel"]): d["status"] for m in detail["messages"] for d in m["deliveries"]}
    assert statuses[("pt_inquiry_0000001", "inbox")] == "sent"
    assert statuses[("dc_inquiry_0000001", "app_push")] == "skipped"

    other = backend_client(client="other-backend")
    response = other.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
