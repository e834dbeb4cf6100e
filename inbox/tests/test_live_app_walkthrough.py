"""The live inbox as the apps' developers meet it from README: the H5 page (token in the first
frame), the mini program and the native app (token in the header). What a client gets for a
mistake of its own: an answer in the API's error shape and a close code it can act on, never a
dropped socket, a silently ignored frame, or a stream where a WebSocket was asked for."""

import json
import time
from datetime import timedelta

import httpx
import pytest
from uvicorn.main import main as uvicorn_main
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from inbox import live

from .live_clients import Server
from .test_live import put, token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(settings):
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "HEARTBEAT_SECONDS": 5}
    with Server() as running:
        yield running


def closed_with(ws, timeout=3.0) -> int | None:
    """The close code the server sent (None: the socket dropped without a close frame)."""
    with pytest.raises(Exception) as closed:
        while True:
            ws.next(timeout=timeout, skip=("ping",))
    received = getattr(closed.value, "rcvd", None)
    return received.code if received else None


@pytest.mark.parametrize("raw", ["Infinity", "true", "1.7", '"1.5"', "[3]", '"-1"'])
def test_a_first_frame_resuming_from_no_event_id_is_refused_with_4400(server, raw):
    """The H5 page's first frame carries `last_event_id`; `Infinity` dropped the socket (an
    OverflowError past the error answer), `true` and `1.7` were taken as 1."""
    first = f'{{"type": "auth", "token": "{token()}", "last_event_id": {raw}}}'
    ws = server.ws()
    ws.conn.send(first)

    frame = ws.next()

    assert frame == {
        "type": "error",
        "code": "invalid",
        "message": "The last event id is not an event id.",
        "fields": {"last_event_id": ["A whole number ≥ 0."]},
    }
    assert closed_with(ws) == live.CLOSE_INVALID


def test_a_first_frame_resuming_from_a_number_or_its_digits_resumes(server):
    missed = put(n=2)
    for value in (0, "0"):
        ws = server.ws(first_frame={"type": "auth", "token": token(), "last_event_id": value})
        frames = ws.until("ready")
        assert [f["data"]["message"]["id"] for f in frames[:-1]] == [m.pk for m in missed]
        ws.close()


def test_frames_the_server_does_not_know_are_answered_and_the_connection_goes_on(server):
    """A native app's typo (`{"type": "pong"}`, a bare string) was ignored without a word."""
    ws = server.ws(token(), query="?platform=app")
    ws.next()

    answers = []
    for text in ("garbage{", "[1]", '{"type": "pong"}', ""):
        ws.conn.send(text)
        answers.append(ws.next())
    ws.conn.send('{"type": "ping"}')
    pong = ws.next()
    (message,) = put()
    created = ws.next()

    assert [(a["type"], a["code"]) for a in answers] == [
        ("error", "malformed_json"),
        ("error", "invalid"),
        ("error", "invalid"),
        ("error", "malformed_json"),
    ]
    assert answers[1]["fields"] == {"type": ["One of ping, auth."]}
    assert pong == {"type": "pong"}
    assert created["data"]["message"]["id"] == message.pk
    ws.close()


def test_a_frame_too_big_is_refused_with_1009(server):
    """uvicorn takes frames of up to 16 MiB; each was parsed on the process's event loop."""
    ws = server.ws(token())
    ws.next()

    ws.conn.send(json.dumps({"type": "ping", "pad": "x" * live.CLIENT_FRAME_MAX}))

    assert ws.next()["code"] == "payload_too_large"
    assert closed_with(ws) == live.CLOSE_TOO_BIG

    first = server.ws(first_frame={"type": "auth", "token": token(), "pad": "x" * live.CLIENT_FRAME_MAX})
    assert first.next()["code"] == "payload_too_large"
    assert closed_with(first) == live.CLOSE_TOO_BIG


def test_another_persons_token_in_band_is_refused_in_the_api_error_shape(server):
    """A doctor's token on a patient's connection (the same id), or another patient's."""
    for other in (token(role="doctor"), token(sub="p-43")):
        ws = server.ws(token())
        ws.next()

        ws.conn.send(json.dumps({"type": "auth", "token": other}))

        assert ws.next() == {
            "type": "error",
            "code": "token_other_person",
            "message": "The token names another person.",
            "fields": {},
        }
        assert closed_with(ws) == live.CLOSE_UNAUTHORIZED


def test_the_expiry_error_frame_has_the_api_error_shape(server):
    # Two seconds: exp is whole seconds, and a token already past it is refused at connect.
    ws = server.ws(token(lifetime=timedelta(seconds=2)))
    ws.next()

    assert ws.next(timeout=6) == {
        "type": "error",
        "code": "token_expired",
        "message": "The token has expired.",
        "fields": {},
    }
    assert closed_with(ws) == live.CLOSE_UNAUTHORIZED


def test_a_token_past_its_exp_is_refused_rather_than_accepted_and_closed_at_once(server):
    """The JWT leeway (30 s) let such a token through: `ready` (or `auth_ok` for a refresh),
    then a close for expiry the same moment."""
    stale = token(lifetime=timedelta(seconds=-5))

    ws = server.ws(stale)
    assert ws.next()["code"] == "token_expired"
    assert closed_with(ws) == live.CLOSE_UNAUTHORIZED

    refreshed = server.ws(token())
    refreshed.next()
    refreshed.conn.send(json.dumps({"type": "auth", "token": stale}))
    assert refreshed.next()["code"] == "token_expired"
    assert closed_with(refreshed) == live.CLOSE_UNAUTHORIZED

    sse = server.sse(stale)
    assert (sse.status, sse.body["code"]) == (401, "token_expired")


def test_a_plain_get_of_the_websocket_path_is_426_not_an_event_stream(server):
    """A proxy that drops the upgrade, or a client that forgot it, got 200 text/event-stream."""
    response = httpx.get(
        f"http://127.0.0.1:{server.port}{live.WS_PATH}", headers={"Authorization": f"Bearer {token()}"}, timeout=5
    )

    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.json()["code"] == "upgrade_required"


def test_a_websocket_to_the_stream_path_is_refused(server):
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"ws://127.0.0.1:{server.port}{live.SSE_PATH}",
            additional_headers={"Authorization": f"Bearer {token()}"},
            open_timeout=5,
        )
    assert refused.value.response.status_code == 403


def test_the_stream_says_which_method_it_allows(server):
    response = httpx.post(
        f"http://127.0.0.1:{server.port}{live.SSE_PATH}", headers={"Authorization": f"Bearer {token()}"}, timeout=5
    )

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, OPTIONS"
    assert response.json()["code"] == "method_not_allowed"


def test_the_openapi_document_points_to_the_live_inbox(client):
    """An app developer reading /api/docs/ found no trace of the live endpoints."""
    description = client.get("/api/schema/?format=json").json()["info"]["description"]

    assert live.WS_PATH in description
    assert live.SSE_PATH in description
    assert "first frame" in description


def test_a_restart_cuts_the_event_streams_within_the_web_units_grace(settings):
    """uvicorn's stop waits for every response under way, and an event stream never ends: with one
    open, `systemctl restart notifycenter-web` waited for TimeoutStopSec and a SIGKILL (its
    connection slots kept for 75 s more, the machine answering nothing meanwhile)."""
    from tests.test_deploy_units import exec_start, unit

    flags = uvicorn_main.make_context("uvicorn", exec_start("notifycenter-web.service")[1:]).params
    grace = flags["timeout_graceful_shutdown"]
    assert grace is not None and grace < int(unit("notifycenter-web.service")["TimeoutStopSec"][0])

    with Server(timeout_graceful_shutdown=grace) as server:
        sse = server.sse(token())
        sse.next()
        stopped = time.monotonic()
        server.server.should_exit = True  # what SIGTERM does

        assert sse.next(timeout=grace + 3)["type"] == "end"
        server.thread.join(3)
        assert not server.thread.is_alive()
        assert time.monotonic() - stopped < grace + 3


def test_a_client_that_stopped_reading_holds_one_overflow_marker_not_one_per_event():
    conn = live.Connection(hub=None, person=live.Person("patient", "p-42", expires_at=0), platform=None)

    for n in range(live.QUEUE_MAX + 500):
        conn.offer({"id": n + 1, "type": "counts.changed", "data": {}})

    assert conn.queue.qsize() == live.QUEUE_MAX + 1
    items = [conn.queue.get_nowait() for _ in range(live.QUEUE_MAX + 1)]
    assert items[-1] == ("overflow", None)


def test_the_count_answers_where_to_connect_from_and_nothing_is_missed_between(server, patient_app):
    """An app opens: it reads the count (with `last_event_id`), then its list, then connects with
    that id. A message written between the count and the list is in the list and comes again as an
    event (skipped by id); one written after the list comes as an event; nothing falls between."""
    put(n=2)
    counts = patient_app.get("/api/v1/inbox/unread-count").json()
    assert counts["total"] == 2
    assert counts["last_event_id"] == 2  # the two message.created events

    (between,) = put(start=2)  # after the count, before the list
    listed = [m["id"] for m in patient_app.get("/api/v1/inbox/messages").json()["results"]]
    assert between.pk in listed
    ws = server.ws(token(), query=f"?platform=h5&last_event_id={counts['last_event_id']}")
    (after,) = put(start=3)

    frames = ws.until("message.created") + ws.until("message.created")
    created = [f["data"]["message"]["id"] for f in frames if f["type"] == "message.created"]
    assert created == [between.pk, after.pk]
    assert [f["id"] for f in frames if f["type"] == "message.created"] == [3, 4]
    ws.close()


def test_the_counts_etag_changes_with_the_last_event_id(patient_app):
    """A change that leaves the counts as they were (archiving a read message) still moves the
    position, so a client holding the old ETag gets the new `last_event_id`, not a 304."""
    (message,) = put()
    patient_app.post(f"/api/v1/inbox/messages/{message.pk}/read")
    first = patient_app.get("/api/v1/inbox/unread-count")
    patient_app.post("/api/v1/inbox/mark", {"action": "archive", "ids": [message.pk]}, format="json")

    again = patient_app.get("/api/v1/inbox/unread-count", HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 200
    assert again.json()["last_event_id"] == first.json()["last_event_id"] + 1
    assert {k: v for k, v in again.json().items() if k != "last_event_id"} == {
        k: v for k, v in first.json().items() if k != "last_event_id"
    }


H5_ORIGIN = "https://m.hospital.example"


@pytest.fixture
def h5_origin_listed(settings):
    settings.CORS_ALLOWED_ORIGINS = [H5_ORIGIN]


def test_an_h5_page_on_a_listed_origin_may_call_the_inbox_from_the_browser(h5_origin_listed, patient_app, backend):
    """The catalog's H5 links live on the apps' own host: without CORS a browser refused every
    inbox call from there. Listed origins get the inbox's paths; others and the backend's
    Api-Key paths get nothing a browser would act on."""
    preflight = patient_app.options(
        "/api/v1/inbox/messages",
        HTTP_ORIGIN=H5_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, if-none-match",
    )
    count = patient_app.get("/api/v1/inbox/unread-count", HTTP_ORIGIN=H5_ORIGIN)
    stranger = patient_app.get("/api/v1/inbox/unread-count", HTTP_ORIGIN="https://evil.example")
    events = backend.get("/api/v1/events/1", HTTP_ORIGIN=H5_ORIGIN)

    assert preflight.status_code == 200
    assert preflight["access-control-allow-origin"] == H5_ORIGIN
    assert {"authorization", "if-none-match"} <= set(preflight["access-control-allow-headers"].split(", "))
    assert count.status_code == 200 and count["access-control-allow-origin"] == H5_ORIGIN
    assert "etag" in count["access-control-expose-headers"].lower()  # the badge poller's If-None-Match
    assert "access-control-allow-origin" not in stranger
    assert "access-control-allow-origin" not in events


def test_the_event_stream_answers_a_listed_origins_preflight_and_get(h5_origin_listed, server):
    url = f"http://127.0.0.1:{server.port}/api/v1/inbox/stream?platform=h5"
    asks = {"Origin": H5_ORIGIN, "Access-Control-Request-Method": "GET"}

    preflight = httpx.options(url, headers={**asks, "Access-Control-Request-Headers": "authorization, last-event-id"})
    refused = httpx.options(url, headers={**asks, "Origin": "https://evil.example"})
    with httpx.stream("GET", url, headers={"Origin": H5_ORIGIN, "Authorization": f"Bearer {token()}"}) as stream:
        opened = (stream.status_code, stream.headers.get("access-control-allow-origin"))
    unauthenticated = httpx.get(url, headers={"Origin": H5_ORIGIN})

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == H5_ORIGIN
    assert "last-event-id" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-origin" not in refused.headers
    assert opened == (200, H5_ORIGIN)
    # A refusal the page can read (401, get a new token), not an opaque network error.
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["access-control-allow-origin"] == H5_ORIGIN
