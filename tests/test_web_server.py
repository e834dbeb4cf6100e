"""The web server as `make run` and deploy/ run it: uvicorn serving notifycenter.asgi, Django on a
fixed pool of threads (notifycenter/threads.py), over real sockets: the API's answers, its error
shape, and the threads reused from request to request."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings

from inbox.tests.live_clients import Server
from notifycenter.auth import issue_inbox_token
from notifycenter.models import ApiKey
from notifycenter.threads import ThreadedWSGI
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web():
    with Server() as running:
        yield f"http://127.0.0.1:{running.port}"


def test_django_is_served_on_the_pool_of_threads(catalog, web):
    from notifycenter import asgi

    assert settings.WEB_THREADS > 0 and isinstance(asgi.django_threads, ThreadedWSGI)
    _, raw = ApiKey.generate(client="his", name="web", scopes=["events"])
    backend = {"Authorization": f"Api-Key {raw}"}
    patient = {"Authorization": f"Bearer {issue_inbox_token(role='patient', external_id='p-42')}"}

    before = {t.ident for t in threading.enumerate()}

    def post(i):
        return httpx.post(f"{web}/api/v1/events", json=paid_event(key=f"web-{i}"), headers=backend, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(48)))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers if a.status_code != 202][:2]
    assert len({a.json()["event_id"] for a in answers}) == 48
    # 48 requests, 16 at a time: served by at most WEB_THREADS threads, not a thread each.
    new_threads = {t.ident for t in threading.enumerate()} - before
    assert len(new_threads) <= settings.WEB_THREADS

    listed = httpx.get(f"{web}/api/v1/inbox/messages", params={"limit": 100}, headers=patient, timeout=30)
    assert listed.status_code == 200 and len(listed.json()["results"]) >= 1
    replay = httpx.post(f"{web}/api/v1/events", json=paid_event(key="web-0"), headers=backend, timeout=30)
    assert replay.status_code == 200 and replay.json()["event_id"] == answers[0].json()["event_id"]


def test_the_api_goes_through_its_own_middleware_and_the_admin_through_all(catalog, web):
    """notifycenter/handlers.py: no session, CSRF or language cookie machinery under /api/, the
    same security headers as everywhere; the admin keeps every middleware it needs."""
    _, raw = ApiKey.generate(client="his", name="web", scopes=["events"])
    answer = httpx.post(
        f"{web}/api/v1/events", json=paid_event(key="chain-1"), headers={"Authorization": f"Api-Key {raw}"}, timeout=30
    )
    assert answer.status_code == 202
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in answer.headers and "cookie" not in answer.headers.get("vary", "").lower()
    assert "content-language" not in answer.headers  # the admin's language middleware: not here
    assert int(answer.headers["content-length"]) == len(answer.content)

    login = httpx.get(f"{web}/admin/login/", timeout=30)
    assert login.status_code == 200 and login.headers["content-language"] == "zh-hans"
    assert "csrftoken" in login.headers.get("set-cookie", "")
    assert login.headers["x-frame-options"] == "DENY"


def test_bad_input_gets_the_api_error_shape_through_the_server(web):
    _, raw = ApiKey.generate(client="his", name="web", scopes=["events"])
    answer = httpx.post(
        f"{web}/api/v1/events",
        content=b"{not json",
        headers={"Authorization": f"Api-Key {raw}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_json")
    unauthenticated = httpx.get(f"{web}/api/v1/inbox/messages", timeout=30)
    assert unauthenticated.status_code == 401 and unauthenticated.json()["code"]


def test_a_request_whose_client_left_before_its_body_was_whole_runs_no_view(web, monkeypatch):
    """wrk leaves requests half sent when a run ends; so do phones going into a tunnel. No view
    may run on the part that came (a2wsgi alone gave Django a short body: a 400 or a 500)."""
    from django.core.handlers.wsgi import WSGIHandler

    served = []
    handle = WSGIHandler.__call__

    def counted(self, environ, start_response):
        served.append(environ["PATH_INFO"])
        return handle(self, environ, start_response)

    monkeypatch.setattr(WSGIHandler, "__call__", counted)
    host, port = web.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"event": "inquiry.paid", "idempo'
        )
        time.sleep(0.3)
    time.sleep(0.3)
    assert httpx.get(f"{web}/healthz", timeout=30).status_code == 200
    assert served == ["/healthz"]
