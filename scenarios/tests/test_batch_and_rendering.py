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
