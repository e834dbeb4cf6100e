"""The bridge from the event loop to Django's threads (notifycenter/threads.py), as an ASGI server
drives it: an answer whole in one hand-off, a streaming answer piece by piece from one thread, a
body longer than the loop read, the lifespan, a view's exception."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.http import HttpResponse, StreamingHttpResponse

from notifycenter.threads import ThreadedWSGI

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/echo",
    "raw_path": b"/echo",
    "query_string": b"a=1",
    "root_path": "",
    "headers": [(b"host", b"x"), (b"content-type", b"application/json"), (b"x-thing", b"1")],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}


def serve(app, messages: list[dict], scope=SCOPE) -> list[dict]:
    """Run `app` on an event loop with `messages` to receive; what it sent."""
    sent: list[dict] = []

    async def main():
        incoming = list(messages)

        async def receive():
            if incoming:
                return incoming.pop(0)
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        await app(dict(scope), receive, send)

    # A loop of its own on a thread of its own: the suite's main thread may have one running.
    with ThreadPoolExecutor(max_workers=1) as runner:
        runner.submit(asyncio.run, main()).result()
    return sent


def wsgi(view):
    """A WSGI application answering with `view(environ, body)`, a Django response."""

    def app(environ, start_response):
        response = view(environ, environ["wsgi.input"].read())
        start_response(f"{response.status_code} OK", list(response.items()))
        return response

    return app


def test_an_answer_goes_whole_with_its_length():
    seen = {}

    def view(environ, body):
        seen.update(body=body, query=environ["QUERY_STRING"], thing=environ["HTTP_X_THING"])
        seen["thread"] = threading.current_thread().name
        return HttpResponse(b'{"ok": true}', status=202, content_type="application/json")

    bridge = ThreadedWSGI(wsgi(view), workers=2)
    sent = serve(bridge, [{"type": "http.request", "body": b'{"a": 1}', "more_body": False}])

    assert seen == {"body": b'{"a": 1}', "query": "a=1", "thing": "1", "thread": seen["thread"]}
    assert seen["thread"].startswith("WSGI")
    start, body = sent
    assert start["type"] == "http.response.start" and start["status"] == 202
    assert dict(start["headers"])[b"content-length"] == b"12"
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    assert body == {"type": "http.response.body", "body": b'{"ok": true}'}


def test_a_body_longer_than_the_loop_read_streams_from_the_loop():
    bridge = ThreadedWSGI(wsgi(lambda environ, body: HttpResponse(body)), workers=1)
    parts = [
        {"type": "http.request", "body": b"first-", "more_body": True},
        {"type": "http.request", "body": b"second-", "more_body": True},
        {"type": "http.request", "body": b"third", "more_body": False},
    ]
    sent = serve(bridge, parts)
    assert sent[1]["body"] == b"first-second-third"


def test_a_streaming_answer_goes_piece_by_piece_from_the_thread_that_made_it():
    made_by = []

    def pieces():
        for n in range(3):
            made_by.append(threading.get_ident())
            yield f"piece {n};".encode()

    bridge = ThreadedWSGI(wsgi(lambda environ, body: StreamingHttpResponse(pieces())), workers=4)
    sent = serve(bridge, [{"type": "http.request", "body": b"", "more_body": False}])

    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert b"content-length" not in dict(sent[0]["headers"])
    assert [m.get("body") for m in sent[1:]] == [b"piece 0;", b"piece 1;", b"piece 2;", b""]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, True, False]
    assert len(set(made_by)) == 1


def test_a_response_is_closed_after_it_is_sent():
    closed = []

    def view(environ, body):
        response = HttpResponse(b"x")
        response.close = lambda: closed.append(True)
        return response

    serve(ThreadedWSGI(wsgi(view), workers=1), [{"type": "http.request", "body": b""}])
    assert closed == [True]


def test_the_lifespan_is_answered():
    sent = serve(
        ThreadedWSGI(wsgi(lambda environ, body: HttpResponse()), workers=1),
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
        scope={"type": "lifespan", "asgi": {"version": "3.0"}},
    )
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_an_exception_out_of_the_application_reaches_the_server():
    def broken(environ, start_response):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        serve(ThreadedWSGI(broken, workers=1), [{"type": "http.request", "body": b""}])
