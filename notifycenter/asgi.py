"""The ASGI entry point, served by uvicorn (scripts/run.sh, docs/operations.md): the live inbox's two
paths go to inbox.live, everything else to Django.

    uvicorn notifycenter.asgi:application

Django is served as a WSGI application on a fixed pool of `WEB_THREADS` threads per process
(notifycenter/threads.py, one hand-off each way per request). Every view here is synchronous:
Django's ASGI handler ran each request's code in a new thread of its own and crossed between the
event loop and threads again for its signals, and on 2 cores that cost more than half of what a
process serves (bench/README.md, 2026-11-30: the bare view 695 requests/s that way against
1,785/s on the pool). The pool's threads keep their database connections between requests.
`WEB_THREADS=0` goes back to Django's ASGI handler, for a deployment that adds async views.
"""

import gc
import os
import time

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")
django_application = get_asgi_application()  # sets Django up before the imports below

from django.conf import settings  # noqa: E402

from inbox.live import CLOSE_UNAUTHORIZED, PATHS, LiveError, Person, live_app  # noqa: E402

from .auth import AuthError, inbox_token_read  # noqa: E402
from .handlers import wsgi_application  # noqa: E402
from .threads import ThreadedWSGI  # noqa: E402
from .warmup import process_warm_up  # noqa: E402


def live_person(token: str) -> Person:
    """The inbox JWT of a live connection, read as the REST API reads it. One past its `exp` is
    refused here though the REST API's leeway still takes it: a live connection closes at `exp`,
    so it was accepted (`ready`, or `auth_ok` for a refresh) only to be closed the same moment."""
    try:
        user, claims = inbox_token_read(token)
    except AuthError as err:
        raise LiveError(err.error_code, str(err.detail), 401, CLOSE_UNAUTHORIZED) from err
    if claims["exp"] <= time.time():
        raise LiveError("token_expired", "The token has expired.", 401, CLOSE_UNAUTHORIZED)
    return Person(audience=user.role, recipient_id=user.external_id, expires_at=float(claims["exp"]))


def body_first(app, *, limit: int):
    """Read an HTTP request's body on the event loop before `app` hands it to a thread, up to
    `limit` bytes (past it the rest streams as it comes). A client that goes away before its
    request is whole is dropped here, with no view run, as Django's ASGI handler drops it: a2wsgi
    alone gave the view what had come, a short or empty body (400s and a 500 in bench/ingest.py's
    server log, from the requests wrk leaves unfinished). The thread then reads the body in one
    piece rather than one round trip to the event loop per chunk."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more and size <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]

        async def replay():
            return pending.pop() if pending else await receive()

        return await app(scope, replay, send)

    return wrapped


live_application = live_app(authenticate=live_person)
django_threads = None  # the pool serving Django's views (None: Django's own ASGI handler)
if settings.WEB_THREADS:
    django_threads = ThreadedWSGI(
        wsgi_application(), workers=settings.WEB_THREADS, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )
    django_application = body_first(django_threads, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

if settings.WEB_WARM_UP:
    process_warm_up()

# A process holding thousands of live connections has millions of long-lived objects; each full
# pass of the cyclic collector over them stops every connection for hundreds of milliseconds
# (seconds on a busy machine: bench/live.py). Everything loaded so far (Django, the apps) lives
# as long as the process, so it leaves the collector's sight; and young collections run less
# often, so that the short-lived objects of each request and event die before they are promoted
# and full passes become rare.
gc.freeze()
gc.set_threshold(50_000, 20, 100)


async def application(scope, receive, send):
    if scope["type"] in ("http", "websocket") and scope["path"] in PATHS:
        return await live_application(scope, receive, send)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})  # no other WebSocket paths
        return
    return await django_application(scope, receive, send)
