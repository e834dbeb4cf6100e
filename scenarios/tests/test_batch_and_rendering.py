import pytest

from scenarios.models import Event, Template
from scenarios.rendering import RenderError, render_text
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_answers_each_event_on_its_own(catalog, backend):
    good = paid_event(key="b-1")
    replay = paid_event(key="b-1")
    bad_data = paid_event(key="b-2", consultation_type="letter")
    no_key = {"event": "inquiry.paid", "data": {}}

    response = backend.post("/api/v1/events/batch", [good, replay, bad_data, no_key], format="json")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 200, 400, 400]
    assert results[1]["body"] == results[0]["body"]
    assert results[2]["body"]["code"] == "invalid_data"
    assert results[3]["body"] == {
        "code": "invalid",
        "message": "The request is invalid.",
        "fields": {"idempotency_key": ["This field is required."]},
    }
    assert Event.objects.count() == 1


@pytest.mark.parametrize("body", [{}, [], [{}] * 501, "events"])
def test_a_batch_must_be_a_list_of_one_to_five_hundred(catalog, backend, body):
    response = backend.post("/api/v1/events/batch", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_batch"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ settings.SECRET_KEY }}",
    ],
)
def test_templates_can_neither_run_code_nor_read_settings(source):
    with pytest.raises(RenderError):
        render_text(source, {"doctor_name": "李明"}, field="body")


def test_a_missing_variable_rejects_the_event_instead_of_sending_a_blank(catalog, backend):
    Template.objects.filter(code="pt_inquiry_0000001").update(body="您的优惠券{{ coupon_code }}已到账")

    response = backend.post("/api/v1/events", paid_event(), format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"template.pt_inquiry_0000001.body": ["'coupon_code' is undefined"]}
    assert Event.objects.count() == 0


def test_an_edit_in_the_admin_takes_effect_on_the_next_event(catalog, backend, admin_client):
    from inbox.models import InboxMessage

    backend.post("/api/v1/events", paid_event(key="before"), format="json")
    template = Template.objects.get(code="pt_inquiry_0000001")
    template.title = "支付成功（新版）"
    template.save()  # as the admin's save does: the catalog version moves

    backend.post("/api/v1/events", paid_event(key="after"), format="json")

    titles = list(InboxMessage.objects.filter(recipient_id="p-42").order_by("id").values_list("title", flat=True))
    assert titles == ["问诊支付成功", "支付成功（新版）"]


def test_a_key_repeated_inside_one_batch_is_answered_like_a_retry(catalog, backend):
    first = paid_event(key="dup")
    same = paid_event(key="dup")
    other = paid_event(key="dup", amount="99.00")

    results = backend.post("/api/v1/events/batch", [first, same, other], format="json").json()["results"]

    assert [r["status"] for r in results] == [202, 200, 409]
    assert results[1]["body"] == results[0]["body"]
    assert results[2]["body"]["code"] == "idempotency_conflict"
    assert Event.objects.count() == 1


def test_later_events_in_a_batch_cancel_reminders_planned_by_earlier_ones(catalog, backend):
    booked = {
        "event": "inquiry.appointment_booked",
        "idempotency_key": "book",
        "data": {
            "inquiry_id": "9001",
            "order_no": "IQ1",
            "consultation_type": "video",
            "patient_name": "张三",
            "appointment_time": "2030-03-01T10:00:00+08:00",
        },
        "recipients": {"doctor": ["d-17"]},
    }
    declined = {
        "event": "inquiry.declined",
        "idempotency_key": "decline",
        "data": {"inquiry_id": "9001", "doctor_name": "李明", "reason": "临时手术", "amount": "50.00"},
        "recipients": {"patient": ["p-42"]},
    }

    results = backend.post("/api/v1/events/batch", [booked, declined], format="json").json()["results"]

    assert [r["status"] for r in results] == [202, 202]
    assert results[1]["body"]["cancelled_reminders"] == 2
    from scenarios.models import Message

    assert set(Message.objects.filter(event__idempotency_key="book").values_list("status", flat=True)) == {"cancelled"}
