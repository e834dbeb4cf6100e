"""An API request leaves nothing for Python's cyclic garbage collector (notifycenter/middleware.py,
DrfCyclesMiddleware): its objects are freed by reference counting when the answer is out, so no
collection has to stop the web process's threads to find them. Through the WSGI application as the
web servers run it (the API's own middleware).

Not yet so elsewhere: a DRF serializer is itself a cycle (its fields hold their parent), so a
request that makes one (an inbox list: 127 objects; a refused event: 62) still leaves it; and under
the full chain (the admin's), Django's message storage and the request hold each other."""

import gc
import io
import json

import pytest

from notifycenter.handlers import wsgi_application
from notifycenter.models import ApiKey
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)  # the handler closes its connection at the end


def _call(app, method: str, path: str, authorization: str, body: dict | None = None) -> str:
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
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
