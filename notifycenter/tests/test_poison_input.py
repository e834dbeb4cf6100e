"""Poison input is one item's problem: each answer is a 400 (413 for a body over the limit) with
the offending field path, nothing is stored, and a bad item in a batch fails alone."""

import json

import pytest

from channels.models import Delivery, Recipient
from scenarios.limits import DATA_MAX_BYTES, RECIPIENTS_PER_EVENT
from scenarios.models import Event
from tests.factories import paid_event

pytestmark = pytest.mark.django_db


def raw_post(client, body: str | bytes, path="/api/v1/events"):
    return client.generic("POST", path, body, content_type="application/json")


def refused(response, status=400):
    assert response.status_code == status, response.content
    assert Event.objects.count() == 0
    return response.json()


def test_a_nul_byte_in_data_is_400_with_its_path(catalog, backend):
    body = refused(backend.post("/api/v1/events", paid_event(department="心\x00内科"), format="json"))
    assert body["code"] == "invalid"
    assert body["fields"] == {"data.department": ["Null characters are not allowed."]}


def test_a_nul_byte_in_an_id_or_key_is_400(catalog, backend):
    payload = paid_event(key="k\x00")
    payload["recipients"] = {"patient": ["p-\x0042"]}
    body = refused(backend.post("/api/v1/events", payload, format="json"))
    assert set(body["fields"]) == {"idempotency_key", "recipients.patient.0"}


def test_a_lone_surrogate_is_400(catalog, backend):
    text = json.dumps(paid_event(), ensure_ascii=False).replace("心内科", "\\ud800")
    body = refused(raw_post(backend, text))
    assert body["fields"] == {"data.department": ["Lone surrogate characters are not allowed."]}


def test_a_number_json_cannot_hold_is_400(catalog, backend):
    text = json.dumps(paid_event(), ensure_ascii=False).replace('"50.00"', "1e400")
    assert refused(raw_post(backend, text))["fields"] == {"data.amount": ["Number out of range."]}
    assert refused(raw_post(backend, text.replace("1e400", "NaN")))["code"] == "malformed_json"


def test_json_nested_5000_deep_is_400(catalog, backend):
    deep = "[" * 5000 + "]" * 5000
    text = json.dumps(paid_event(), ensure_ascii=False).replace('"心内科"', deep)
    assert refused(raw_post(backend, text))["code"] == "malformed_json"
    moderately = "[" * 40 + "]" * 40
    body = refused(raw_post(backend, json.dumps(paid_event(), ensure_ascii=False).replace('"心内科"', moderately)))
    assert body["code"] == "invalid" and "Nested deeper" in str(body["fields"])


def test_a_10_mb_body_is_413(catalog, backend):
    text = json.dumps(paid_event(note="x" * 10_000_000))
    body = refused(raw_post(backend, text), status=413)
    assert body["code"] == "payload_too_large"


def test_data_over_its_limit_is_400_not_a_megabyte_inbox_body(catalog, backend):
    # A megabyte as sent (300,000 characters of three UTF-8 bytes), under the body limit.
    body = refused(backend.post("/api/v1/events", paid_event(department="科" * 300_000), format="json"))
    assert list(body["fields"]) == ["data"] and str(DATA_MAX_BYTES) in body["fields"]["data"][0]


def test_a_rendered_field_over_its_limit_is_400(catalog, backend):
    body = refused(backend.post("/api/v1/events", paid_event(department="x" * 20_000), format="json"))
    assert body["code"] == "invalid_event"
    assert any(path.endswith(".body") for path in body["fields"]), body["fields"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"id": "p" * 65}, "recipients.patient.0.id"),
        ({"id": "p-42", "phone": "1" * 40}, "recipients.patient.0.phone"),
        ({"id": "p-42", "wechat_oa_openid": "o" * 65}, "recipients.patient.0.wechat_oa_openid"),
        ({"id": "p-42", "locale": "zh-hans-" + "x" * 20}, "recipients.patient.0.locale"),
        ({"id": "p-42", "push_registration_ids": "abc"}, "recipients.patient.0.push_registration_ids"),
        ({"id": ""}, "recipients.patient.0.id"),
        ("p" * 65, "recipients.patient.0"),
    ],
)
def test_inline_addresses_are_checked_as_put_recipients_checks_them(catalog, backend, entry, field):
    payload = paid_event()
    payload["recipients"]["patient"] = [entry]
    body = refused(backend.post("/api/v1/events", payload, format="json"))
    assert field in body["fields"], body
    assert not Recipient.objects.filter(audience="patient").exists()


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-12:00", "9999-12-31", "0001-01-01T00:00:00+14:00"])
def test_far_dates_in_an_anchor_time_are_400(catalog, backend, when):
    body = refused(backend.post("/api/v1/events", paid_event(appointment_time=when), format="json"))
    assert "data.appointment_time" in body["fields"], body


def test_a_far_occurred_at_is_400(catalog, backend):
    payload = {**paid_event(), "occurred_at": "9999-12-31T23:59:59-12:00"}
    assert "occurred_at" in refused(backend.post("/api/v1/events", payload, format="json"))["fields"]


def test_more_recipients_than_the_limit_is_400_and_names_the_broadcast_path(catalog, backend):
    payload = paid_event()
    payload["recipients"]["patient"] = [f"p-{i}" for i in range(RECIPIENTS_PER_EVENT + 1)]
    body = refused(backend.post("/api/v1/events", payload, format="json"))
    assert "broadcast" in body["fields"]["recipients"][0]


def test_an_empty_idempotency_key_is_400(catalog, backend):
    payload = {**paid_event(), "idempotency_key": ""}
    assert "idempotency_key" in refused(backend.post("/api/v1/events", payload, format="json"))["fields"]


def test_a_bad_item_in_a_batch_fails_alone(catalog, backend):
    items = [paid_event() for _ in range(4)]
    items[2]["data"]["department"] = "心\x00内科"
    items[3]["recipients"]["patient"] = [{"id": "p-42", "push_registration_ids": "abc"}]
    response = backend.post("/api/v1/events/batch", items, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202, 400, 400]
    assert results[2]["body"]["fields"] == {"data.department": ["Null characters are not allowed."]}
    assert "recipients.patient.0.push_registration_ids" in results[3]["body"]["fields"]
    assert Event.objects.count() == 2


def test_a_nul_in_a_path_or_query_is_400(catalog, backend):
    response = backend.put("/api/v1/recipients/patient/p%0042", {"phone": "13812345678"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert backend.put("/api/v1/recipients/patient/" + "p" * 65, {}, format="json").status_code == 400
    assert not Recipient.objects.exists() and not Delivery.objects.exists()
