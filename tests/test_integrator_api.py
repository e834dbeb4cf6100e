"""The hospital backend's developer integrating for the first time, from README and the OpenAPI
document only: every example valid against its own schema, every answer the server gives
described by the document (its status code and its fields), idempotency the same for events and
broadcasts, and status webhooks checked with README's recipe."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from notifycenter import webhooks
from notifycenter.models import WebhookDelivery, WebhookStatus
from notifycenter.webhooks import webhook_replay, webhooks_publish, webhooks_send_due
from scenarios import fanout
from scenarios.models import Broadcast
from scenarios.tests.test_fanout_broadcasts import make_template
from tests.clients import backend_client
from tests.factories import paid_event

DOCUMENT = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml").read_text())
SECRET = "whsec-integrator-0123456789"


def _json_schema(schema):
    """An OpenAPI 3.0 schema as JSON Schema (draft 7): `nullable`, and refs into definitions."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _json_schema(v) for k, v in schema.items() if k not in ("example", "readOnly", "writeOnly")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


DEFINITIONS = {name: _json_schema(s) for name, s in DOCUMENT["components"]["schemas"].items()}


def problems(schema, value) -> list[str]:
    full = {**_json_schema(schema), "definitions": DEFINITIONS}
    return [f"{list(e.absolute_path)}: {e.message[:120]}" for e in jsonschema.Draft7Validator(full).iter_errors(value)]


def examples():
    """(label, schema, value) for every example of a request or an answer in the document."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            bodies = [("request", operation.get("requestBody", {}))]
            bodies += [(code, answer) for code, answer in operation.get("responses", {}).items()]
            for where, body in bodies:
                for media in (body.get("content") or {}).values():
                    for name, example in (media.get("examples") or {}).items():
                        yield f"{method} {path} {where} {name}", media["schema"], example["value"]


# Checked on their own below as well.
FOREIGN = {"/api/v1/events/batch", "/api/v1/recipients/{audience}/{external_id}/subscriptions"}


def test_the_document_has_examples_to_check():
    assert len(list(examples())) >= 20


@pytest.mark.parametrize(
    ("label", "schema", "value"),
    [e for e in examples() if e[0].split()[1] not in FOREIGN],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_each_example_is_valid_against_its_own_schema(label, schema, value):
    assert problems(schema, value) == [], label


def test_the_batch_examples_are_valid():
    found = [e for e in examples() if e[0].split()[1] == "/api/v1/events/batch"]
    assert found and all(problems(schema, value) == [] for _, schema, value in found)


def test_the_subscriptions_examples_are_valid():
    found = [e for e in examples() if "subscriptions" in e[0]]
    assert found and all(problems(schema, value) == [] for _, schema, value in found)


def answer_problems(response, path: str, method: str) -> list[str]:
    """What the document says of this answer, against what came: its status and its body."""
    documented = DOCUMENT["paths"][path][method]["responses"]
    code = str(response.status_code)
    if code not in documented:
        return [f"{method} {path}: {code} is not documented"]
    schema = documented[code]["content"]["application/json"]["schema"]
    return problems(schema, response.json())


def declared(schema_name: str) -> set[str]:
    return set(DOCUMENT["components"]["schemas"][schema_name]["properties"])


@pytest.mark.django_db
def test_an_events_detail_is_described_field_by_field(catalog):
    """A generated client keeps only the fields the document names: each one the answer has."""
    api = backend_client()
    event_id = api.post("/api/v1/events", paid_event(), format="json").json()["event_id"]
    detail = api.get(f"/api/v1/events/{event_id}")
    assert answer_problems(detail, "/api/v1/events/{event_id}", "get") == []
    body = detail.json()
    assert set(body) <= declared("EventDetailOutput"), set(body) - declared("EventDetailOutput")
    assert body["subject"] == {"type": "inquiry", "id": "9001"}
    assert set(body["messages"][0]) <= declared("MessageDetail")
    assert set(body["messages"][0]["deliveries"][0]) <= declared("DeliveryStatusOutput")


@pytest.mark.django_db
def test_preferences_answers_match_the_document(catalog):
    api = backend_client()
    path = "/api/v1/recipients/{audience}/{external_id}/preferences"
    changed = api.put("/api/v1/recipients/patient/p-42/preferences", {"channels": {"sms": False}}, format="json")
    assert answer_problems(changed, path, "put") == []
    refused = api.put("/api/v1/recipients/patient/p-42/preferences", {"channels": {"fax": False}}, format="json")
    assert answer_problems(refused, path, "put") == [] and refused.json()["code"] == "invalid_preferences"


@pytest.fixture
def member_day(db, monkeypatch):
    make_template()
    monkeypatch.setattr(fanout, "broadcast_enqueue", lambda **kwargs: None)  # not run: not needed here
    return {
        "name": "会员日",
        "idempotency_key": "member-day-2026",
        "template": "pt_member_day",
        "channels": ["inbox"],
        "data": {"day": "11-30"},
        "recipients": ["p-1", "p-2", "p-3"],
    }


@pytest.mark.django_db
def test_a_broadcast_retried_is_the_first_and_another_body_under_its_key_is_refused(member_day):
    """As for events: a retry after a timeout gets the first answer; the same key with another
    list is a client's bug, answered 409 idempotency_conflict, never the first broadcast."""
    api = backend_client()
    first = api.post("/api/v1/broadcasts", member_day, format="json")
    assert first.status_code == 202
    retry = api.post("/api/v1/broadcasts", member_day, format="json")
    assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"])
    # The same people written differently (a number, a repeat) are the same request.
    same = api.post("/api/v1/broadcasts", {**member_day, "recipients": ["p-1", "p-2", "p-3", "p-2"]}, format="json")
    assert same.status_code == 200
    changes = ({"recipients": ["p-9"]}, {"recipients": True}, {"data": {"day": "12-01"}}, {"channels": ["sms"]})
    for change in (*changes, {"segment": {}}):
        body = {**member_day, **change}
        if "segment" in change:
            body.pop("recipients")
        other = api.post("/api/v1/broadcasts", body, format="json")
        assert other.status_code == 409, (change, other.json())
        assert other.json()["code"] == "idempotency_conflict"
        assert answer_problems(other, "/api/v1/broadcasts", "post") == []
    assert Broadcast.objects.count() == 1
    # Another client's same key is its own broadcast.
    assert backend_client(client="pharmacy").post("/api/v1/broadcasts", member_day, format="json").status_code == 202


@pytest.mark.django_db
def test_a_broadcast_retried_after_it_ended_is_still_the_first(member_day):
    """An ended broadcast drops its list (fanout): a retry is still answered with it."""
    api = backend_client()
    first = api.post("/api/v1/broadcasts", member_day, format="json").json()
    Broadcast.objects.filter(pk=first["id"]).update(status="done", external_ids=[])
    retry = api.post("/api/v1/broadcasts", member_day, format="json")
    assert (retry.status_code, retry.json()["id"]) == (200, first["id"])
    fewer = api.post("/api/v1/broadcasts", {**member_day, "recipients": ["p-1"]}, format="json")
    assert (fewer.status_code, fewer.json()["code"]) == (409, "idempotency_conflict")


@pytest.mark.django_db
def test_cancelling_an_ended_broadcast_is_a_documented_answer(member_day):
    api = backend_client()
    made = api.post("/api/v1/broadcasts", member_day, format="json").json()
    Broadcast.objects.filter(pk=made["id"]).update(status="done")
    cancel = api.post(f"/api/v1/broadcasts/{made['id']}/cancel")
    assert cancel.json()["code"] == "broadcast_finished"
    assert answer_problems(cancel, "/api/v1/broadcasts/{broadcast_id}/cancel", "post") == []


# Status webhooks, with the receiver as README writes it.
def readme_verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    timestamp = headers["Notifycenter-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(headers["Notifycenter-Signature"], f"v1={expected}")


class Backend:
    """The hospital backend's endpoint: verifies, records (id, type, verified) in arrival order."""

    def __init__(self):
        self.taken: list[tuple[str, dict, bool]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = readme_verify(SECRET, self.headers, body)
                event = json.loads(body)
                ok = ok and event["id"] == self.headers["Notifycenter-Id"]
                ok = ok and self.headers["Content-Type"] == "application/json"
                backend.taken.append((event["id"], event, ok))
                self.send_response(204 if ok else 400)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hospital():
    backend = Backend()
    yield backend
    backend.server.shutdown()


EVERY = ["delivery.sent", "delivery.delivered", "delivery.failed", "delivery.read", "message.settled"]


@pytest.mark.django_db(transaction=True)
def test_readmes_receiver_verifies_every_webhook_and_a_replay(catalog, hospital):
    api = backend_client(scopes=("events", "webhooks"))
    hook = {"url": hospital.url, "secret": SECRET, "events": EVERY}
    assert api.post("/api/v1/webhooks", hook, format="json").status_code == 201
    assert api.post("/api/v1/events", paid_event(), format="json").status_code == 202
    for _ in range(10):
        webhooks_publish()
        webhooks_send_due()
    assert hospital.taken and all(ok for _, _, ok in hospital.taken)
    # What came is what the document says the endpoint receives (webhooks_create's callback).
    callback = DOCUMENT["paths"]["/api/v1/webhooks"]["post"]["callbacks"]["status"]["{$request.body#/url}"]["post"]
    schema = callback["requestBody"]["content"]["application/json"]["schema"]
    assert {e["type"] for _, e, _ in hospital.taken} >= {"delivery.sent", "message.settled"}
    assert [p for _, event, _ in hospital.taken for p in problems(schema, event)] == []
    first = WebhookDelivery.objects.filter(status=WebhookStatus.DELIVERED).order_by("id").first()
    count = len(hospital.taken)
    assert webhook_replay(ids=[first.pk]) == 1
    webhooks_send_due()
    replayed = hospital.taken[count:]
    # The same id again (the receiver de-duplicates by it), signed afresh.
    assert [(i, ok) for i, _, ok in replayed] == [(first.event_id, True)]


@pytest.mark.django_db(transaction=True)
def test_message_settled_comes_after_its_deliveries_events(catalog, hospital, monkeypatch):
    monkeypatch.setattr(webhooks, "send_soon", lambda: None)  # rounds of sending as the test calls them
    api = backend_client(scopes=("events", "webhooks"))
    hook = {"url": hospital.url, "secret": SECRET, "events": EVERY}
    assert api.post("/api/v1/webhooks", hook, format="json").status_code == 201
    assert api.post("/api/v1/events", paid_event(), format="json").status_code == 202
    webhooks_publish()
    webhooks_send_due()  # one round: what a receiver may hear first
    heard = {event["id"]: event for _, event, _ in hospital.taken}
    settled = {e["data"]["message_id"] for e in heard.values() if e["type"] == "message.settled"}
    pending = set(
        WebhookDelivery.objects.filter(status=WebhookStatus.PENDING, event__startswith="delivery.").values_list(
            "payload__data__message_id", flat=True
        )
    )
    in_same_round = {e["data"]["message_id"] for e in heard.values() if e["type"].startswith("delivery.")}
    assert not (settled & (pending | in_same_round)), (settled, pending, in_same_round)
