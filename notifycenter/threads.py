"""Django's WSGI application on a fixed pool of threads under the ASGI server, with one hand-off
each way per request.

a2wsgi, which served this until the eighth session, crosses from the thread back to the event
loop and waits there for every piece of an answer (its start, each body chunk, its end) and for
every read of the body: four or five round trips between a pool thread and the loop per request,
each a wait for the other side to get the GIL on a busy process. Here the body read on the event
loop goes to the thread whole (`body_first` in asgi.py reads it), the thread runs the view and
hands back the status, the headers and the body in one piece, and the loop sends them. A body
longer than the loop read streams from the loop as the view reads it, and a streaming answer
(Django's `StreamingHttpResponse`, a file) goes piece by piece as a2wsgi sent them, from the
thread that made it: one thread iterates it, as Django's database connections need.

The WSGI environ is a2wsgi's (`build_environ`), and so is the reader of a longer body (`Body`).
A body without a Content-Length (sent chunked) is read whole on the loop first, up to `limit`,
and given its length: Django reads no more of a body than CONTENT_LENGTH says, and nothing
without it. Past the limit the length says so, and the view refuses it as a sized one (413).
"""

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import Body, build_environ
from django.conf import settings


class _Answer:
    """What the view answered: status, headers, and, unless it streams, its body whole."""

    __slots__ = ("body", "headers", "status", "streamed")

    def __init__(self):
        self.status, self.headers, self.body, self.streamed = 500, [], b"", False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info=None):
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers]
        return self._write

    def _write(self, chunk: bytes):  # PEP 3333's legacy write(); Django never calls it
        raise NotImplementedError("write() is not supported: return an iterable")


class ThreadedWSGI:
    """An ASGI application (HTTP only) running `app`, a WSGI application, on `workers` threads.
    `receive` may already hold the whole body as its first message (asgi.body_first). A body of
    no declared length is read here up to `limit` bytes (DATA_UPLOAD_MAX_MEMORY_SIZE unless told)."""

    def __init__(self, app, *, workers: int, limit: int | None = None):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")
        self.limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":  # nothing to start or stop
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        loop = asyncio.get_running_loop()
        first = await receive()
        body = Body(loop, receive)
        body.buffer.extend(first.get("body", b""))
        body._has_more = first.get("more_body", False)
        environ = build_environ(scope, body)
        if "CONTENT_LENGTH" not in environ and (body.buffer or body._has_more):
            while body._has_more and len(body.buffer) <= self.limit:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left before its body was whole: no view runs
                body.buffer.extend(message.get("body", b""))
                body._has_more = message.get("more_body", False)
            environ["CONTENT_LENGTH"] = str(len(body.buffer))
        context = contextvars.copy_context()
        answer = await loop.run_in_executor(self.executor, context.run, self._run, environ, loop, send)
        if answer.streamed:
            return
        headers = answer.headers
        if not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _run(self, environ, loop, send) -> _Answer:
        answer = _Answer()
        iterable = self.app(environ, answer.start_response)
        try:
            if not getattr(iterable, "streaming", False) and isinstance(getattr(iterable, "content", None), bytes):
                answer.body = iterable.content  # an HttpResponse: its body is already made
                return answer
            answer.streamed = True

            def out(message):
                asyncio.run_coroutine_threadsafe(send(message), loop).result()

            out({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            for chunk in iterable:
                if chunk:
                    out({"type": "http.response.body", "body": chunk, "more_body": True})
            out({"type": "http.response.body", "body": b""})
            return answer
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
