"""An API request leaves nothing for Python's cyclic garbage collector (notifycenter/middleware.py,
DrfCyclesMiddleware): its objects are freed by reference counting when the answer is out, so no
collection has to stop the web process's threads to find them. Through the WSGI application as the
web servers run it (the API's own middleware).

The inbox's reads and marks too (the apps' most frequent calls): a view with `get` held itself
(Django's `head`: 66 objects an unread count), and a DRF serializer is a cycle of its own (its
fields hold their parent: 134 objects an inbox list, 71 a refused event); the API's views release
the serializers they validate with (inbox/cycles.py), and the inbox's answer without an output
serializer.

Not yet so elsewhere: the output serializers of the other views (recipients, webhooks, OTP; a
broadcast's answer), the batch's per-item validation; a request refused by one of Django's
validators (`min_value`: 146 objects), whose ValidationError holds itself (`error_list = [self]`)
and, through its traceback, the whole stack of the moment (DRF catches it inside the field: out
of our reach); and the admin's pages (their templates' contexts, the lookups that raise inside
templates: 300-500 objects a page; ops staff's traffic, not the apps')."""

import gc
import io
import json

import pytest
from rest_framework.exceptions import ValidationError

from inbox.cycles import serializer_release, validated
from inbox.tests.test_inbox_api import put, token
from notifycenter.handlers import wsgi_application
from notifycenter.models import ApiKey
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)  # the handler closes its connection at the end


def _call(app, method: str, path: str, authorization: str, body: dict | None = None) -> str:
    raw = json.dumps(body).encode() if body is not None else b""
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": authorization,
    }
    status = []
    answer = app(environ, lambda s, headers, exc_info=None: status.append(s))
    b"".join(answer)
    answer.close()
    return status[0]


def _unreachable_after(requests) -> int:
    """Objects only the cyclic collector could free, left by running `requests`."""
    gc.collect()
    gc.disable()
    try:
        requests()
        return gc.collect()
    finally:
        gc.enable()


def test_an_accepted_event_leaves_no_cycle_behind(catalog, monkeypatch):
    handed: list = []
    # What the tests' eager Celery would run in this process (and leave: an EagerResult a task)
    # is the workers' part, not the request's.
    monkeypatch.setattr("channels.services.enqueue", handed.extend)
    handler = wsgi_application()
    _, key = ApiKey.generate(client="his", name="cycles", scopes=["events"])
    backend = f"Api-Key {key}"
    assert _call(handler, "POST", "/api/v1/events", backend, paid_event(key="warm")).startswith("202")

    def events():
        for n in range(10):
            assert _call(handler, "POST", "/api/v1/events", backend, paid_event(key=f"c-{n}")).startswith("202")

    # DRF's view, request and response hold one another: 58 objects a request without the middleware.
    assert _unreachable_after(events) == 0
    assert handed


@pytest.mark.parametrize(
    ("method", "path", "body", "answer"),
    [
        ("GET", "/api/v1/inbox/messages?limit=2&platform=app", None, "200"),
        ("GET", "/api/v1/inbox/unread-count", None, "200"),
        ("POST", "/api/v1/inbox/mark", {"action": "seen", "ids": [1, 2]}, "200"),
        ("POST", "/api/v1/inbox/read-all", {"category": "consultation"}, "200"),
    ],
)
def test_inbox_reads_and_marks_leave_no_cycle_behind(method, path, body, answer):
    put(n=3)
    handler = wsgi_application()
    bearer = f"Bearer {token()}"
    assert _call(handler, method, path, bearer, body).startswith(answer)

    def calls():
        for _ in range(10):
            assert _call(handler, method, path, bearer, body).startswith(answer)

    assert _unreachable_after(calls) == 0


def test_a_released_serializer_keeps_what_it_validated_and_its_errors():
    from inbox.apis import BulkMarkApi

    assert validated(BulkMarkApi.BulkInput(data={"action": "read", "ids": [3, 4]})) == {"action": "read", "ids": [3, 4]}
    refused = BulkMarkApi.BulkInput(data={"action": "nope", "ids": [0]})
    with pytest.raises(ValidationError) as caught:
        validated(refused)
    assert set(caught.value.detail) == {"action", "ids"}
    assert "fields" not in refused.__dict__  # released: no field holds it any more
    assert refused.fields["ids"].child.parent is refused.fields["ids"]  # and bound again if asked
    serializer_release(refused)
    assert _unreachable_after(lambda: validated(BulkMarkApi.BulkInput(data={"action": "seen"}))) == 0


def test_a_refused_event_leaves_no_cycle_behind(catalog):
    handler = wsgi_application()
    _, key = ApiKey.generate(client="his", name="cycles", scopes=["events"])
    backend = f"Api-Key {key}"
    refused = {**paid_event(key="x"), "idempotency_key": ""}
    assert _call(handler, "POST", "/api/v1/events", backend, refused).startswith("400")

    def events():
        for _ in range(10):
            assert _call(handler, "POST", "/api/v1/events", backend, refused).startswith("400")

    assert _unreachable_after(events) == 0


def test_the_full_chain_leaves_no_cycle_behind_for_a_plain_view():
    """/healthz goes through every middleware (sessions, auth, messages): the lazy user closed over
    the request and the message storage held it (37 objects a request). The admin's pages still
    leave their own (templates' contexts, lookups that raise inside templates): not done."""
    handler = wsgi_application()
    assert _call(handler, "GET", "/healthz", "").startswith("200")
    assert _unreachable_after(lambda: [_call(handler, "GET", "/healthz", "") for _ in range(10)]) == 0
