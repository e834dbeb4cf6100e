"""Bad input a client can send, walked through the events API: each gets a 4xx with a stable code
and the offending field, changes nothing, and sinks no other item of a batch; never a 500."""

import http.client
import json

import pytest
from django.http import HttpResponse

from inbox.tests.live_clients import Server
from notifycenter.models import ApiKey
from notifycenter.tests.test_threads import SCOPE, serve, wsgi
from notifycenter.threads import ThreadedWSGI
from scenarios.models import Event, PlanEnrollment
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def enrol(key: str, start_date, **data) -> dict:
    return {
        "event": "plan.enrolled",
        "idempotency_key": f"enrol-{key}",
        "data": {"plan": "post_consultation", "enrollment_id": key, "start_date": start_date, **data},
        "recipients": {"patient": ["p-42"]},
    }


# 1. An inline recipient without an id.


def test_an_inline_recipient_without_an_id_is_named_not_a_500(catalog, backend):
    event = paid_event(key="no-id")
    event["recipients"] = {"patient": [{"phone": "13800000000"}], "doctor": ["d-17"]}

    response = backend.post("/api/v1/events", event, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"] == {"recipients.patient.0.id": ["Expected an external id (a string)."]}
    assert not Event.objects.exists()


def test_an_inline_recipient_without_an_id_sinks_only_its_item_of_a_batch(catalog, backend):
    bad = paid_event(key="batch-no-id")
    bad["recipients"] = {"patient": [{"phone": "13800000000"}], "doctor": ["d-17"]}

    response = backend.post("/api/v1/events/batch", [paid_event(key="batch-good"), bad], format="json")

    assert response.status_code == 200, response.content
    good, refused = response.json()["results"]
    assert good["status"] == 202
    assert refused["status"] == 400 and refused["body"]["code"] == "invalid"
    assert set(refused["body"]["fields"]) == {"recipients.patient.0.id"}
    assert list(Event.objects.values_list("idempotency_key", flat=True)) == ["batch-good"]


def test_an_inline_recipient_with_neither_id_nor_good_addresses_names_both(catalog, backend):
    event = paid_event(key="no-id-bad-phone")
    event["recipients"] = {"patient": [{"phone": "12"}], "doctor": ["d-17"]}

    response = backend.post("/api/v1/events", event, format="json")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"recipients.patient.0.id", "recipients.patient.0.phone"}


# 2. A plan's start date that is no date, or out of range.


@pytest.mark.parametrize("start_date", ["2026-02-30", "2026-13-01", "9999-12-31", "0001-01-01", "1900-01-01"])
def test_an_impossible_or_far_start_date_is_named_not_a_500(catalog, backend, start_date):
    response = backend.post("/api/v1/events", enrol("E1", start_date), format="json")

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_event"
    assert list(response.json()["fields"]) == ["data.start_date"]
    assert not Event.objects.exists() and not PlanEnrollment.objects.exists()


def test_an_impossible_start_date_sinks_only_its_item_of_a_batch(catalog, backend):
    items = [enrol("E1", "2026-02-30"), paid_event(key="beside-it"), enrol("E2", "9999-12-31")]

    response = backend.post("/api/v1/events/batch", items, format="json")

    assert response.status_code == 200, response.content
    statuses = [(r["status"], r["body"].get("code")) for r in response.json()["results"]]
    assert statuses == [(400, "invalid_event"), (202, None), (400, "invalid_event")]
    assert list(Event.objects.values_list("idempotency_key", flat=True)) == ["beside-it"]


@pytest.mark.parametrize("enrollment_id", ["x" * 65, ["E1"]])
def test_an_enrollment_id_the_directory_cannot_keep_is_named(catalog, backend, enrollment_id):
    items = [enrol("E1", "2030-01-01", enrollment_id=enrollment_id), paid_event(key="beside-long-id")]

    response = backend.post("/api/v1/events/batch", items, format="json")

    assert response.status_code == 200, response.content
    refused, good = response.json()["results"]
    assert (refused["status"], list(refused["body"]["fields"])) == (400, ["data.enrollment_id"])
    assert good["status"] == 202
    assert not PlanEnrollment.objects.exists()


def test_a_subject_id_from_the_data_longer_than_kept_is_named(catalog, backend):
    response = backend.post(
        "/api/v1/events/batch",
        [paid_event(key="long-subject", inquiry_id="9" * 65), paid_event(key="beside-long-subject")],
        format="json",
    )

    assert response.status_code == 200, response.content
    refused, good = response.json()["results"]
    assert refused["status"] == 400 and list(refused["body"]["fields"]) == ["data.inquiry_id"]
    assert good["status"] == 202
    assert list(Event.objects.values_list("idempotency_key", flat=True)) == ["beside-long-subject"]


@pytest.mark.parametrize("value", ["2026-02-30T15:00:00+08:00", "2026-11-25T25:00:00+08:00", "2026-11-25T15:00+99:00"])
def test_a_date_time_no_calendar_has_is_named_not_a_500(catalog, backend, value):
    """The template's `datetime` filter and the anchor time both read appointment_time."""
    single = backend.post("/api/v1/events", paid_event(key="one", appointment_time=value), format="json")
    assert (single.status_code, single.json()["code"]) == (400, "invalid"), single.content
    assert single.json()["fields"] == {"data.appointment_time": ["Not a real date-time."]}

    batch = backend.post(
        "/api/v1/events/batch",
        [paid_event(key="bad", appointment_time=value), paid_event(key="good")],
        format="json",
    )
    assert batch.status_code == 200, batch.content
    refused, good = batch.json()["results"]
    assert refused["status"] == 400 and list(refused["body"]["fields"]) == ["data.appointment_time"]
    assert good["status"] == 202
    assert list(Event.objects.values_list("idempotency_key", flat=True)) == ["good"]


# 3. A body sent in chunks (Transfer-Encoding: chunked, no Content-Length), through the web server.


@pytest.fixture
def web():
    with Server() as running:
        yield running.port


def chunked(port: int, path: str, body: bytes, *, scopes=("events",)) -> tuple[int, dict]:
    """POST `body` in chunks of 64 KiB over a real socket; the answer's status and JSON."""
    _, raw = ApiKey.generate(client="his", name="chunked", scopes=list(scopes))
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=iter(pieces),
            headers={"Content-Type": "application/json", "Authorization": f"Api-Key {raw}"},
            encode_chunked=True,
        )
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_a_chunked_body_is_read_as_a_sized_one(catalog, web):
    status, body = chunked(web, "/api/v1/events", json.dumps(paid_event(key="chunked-1")).encode())
    assert status == 202, body
    assert Event.objects.filter(idempotency_key="chunked-1").exists()

    items = [paid_event(key="chunked-2"), paid_event(key="chunked-3")]
    status, body = chunked(web, "/api/v1/events/batch", json.dumps(items).encode())
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == [202, 202]

    otp = {"phone": "12", "purpose": "point.withdrawal_requested"}
    status, body = chunked(web, "/api/v1/otp", json.dumps(otp).encode(), scopes=("otp",))
    assert (status, list(body["fields"])) == (400, ["phone"]), body  # purpose was read


def test_a_chunked_body_over_the_limit_is_413(catalog, web, settings):
    event = paid_event(key="chunked-big", note="x" * (settings.API_MAX_BODY_BYTES + 1024 * 1024))
    status, body = chunked(web, "/api/v1/events", json.dumps(event).encode())
    assert (status, body["code"]) == (413, "payload_too_large"), body
    assert not Event.objects.exists()


def test_the_thread_bridge_gives_a_body_of_no_declared_length_its_length():
    """Without asgi.body_first in front: the pieces of a chunked body, none declaring a length."""
    seen = []

    def django_like(environ, start_response):  # reads what CONTENT_LENGTH says, as Django does
        length = int(environ.get("CONTENT_LENGTH") or 0)
        seen.append((length, environ["wsgi.input"].read(length)))
        start_response("200 OK", [])
        return HttpResponse()

    bridge = ThreadedWSGI(django_like, workers=1, limit=100)
    parts = [
        {"type": "http.request", "body": b'{"a": ', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
    ]
    serve(bridge, parts)
    assert seen == [(8, b'{"a": 1}')]

    seen.clear()
    serve(bridge, [{"type": "http.request", "body": b"x" * 80, "more_body": True}] * 3)
    assert seen[0][0] == 160  # past the limit (100): the length says so, and the view refuses it

    seen.clear()
    parts = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    assert serve(bridge, parts) == []
    assert seen == []  # the client left: no view ran


def test_the_thread_bridge_keeps_a_declared_length():
    seen = []

    def view(environ, body):
        seen.append(environ.get("CONTENT_LENGTH"))
        return HttpResponse()

    scope = {**SCOPE, "headers": [*SCOPE["headers"], (b"content-length", b"2")]}
    serve(ThreadedWSGI(wsgi(view), workers=1), [{"type": "http.request", "body": b"{}"}], scope=scope)
    serve(ThreadedWSGI(wsgi(view), workers=1), [{"type": "http.request", "body": b""}])
    assert seen == ["2", None]
