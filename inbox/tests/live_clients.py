"""The live inbox as the tests drive it: uvicorn serving notifycenter.asgi in a thread, a
WebSocket client and an SSE client over real sockets."""

import json
import queue
import threading
import time

import httpx
import uvicorn
from django.db import connection
from websockets.sync.client import connect

from inbox import live


class Server:
    """uvicorn on a free port, in a thread, serving the project's ASGI application."""

    def __init__(self, **config):
        from notifycenter.asgi import application

        config = uvicorn.Config(application, host="127.0.0.1", port=0, lifespan="off", log_level="warning", **config)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        live._hubs.clear()  # the hub belonged to the server's event loop, now closed
        # The server's worker threads are gone but their database sessions are not (Django keeps
        # one per thread); end them, or the test database cannot be dropped.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    def ws(self, token=None, query="", first_frame=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn = connect(f"ws://127.0.0.1:{self.port}/api/v1/inbox/live{query}", additional_headers=headers, legacy=True)
        if first_frame is not None:
            conn.send(json.dumps(first_frame))
        return WsClient(conn)

    def sse(self, token, headers=None, query=""):
        return SseClient(f"http://127.0.0.1:{self.port}/api/v1/inbox/stream{query}", token, headers or {})


class WsClient:
    def __init__(self, conn):
        self.conn = conn

    def next(self, timeout=5.0, skip=("ping",)) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.conn.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame["type"] not in skip:
                return frame

    def until(self, kind, timeout=5.0) -> list[dict]:
        frames = []
        while not frames or frames[-1]["type"] != kind:
            frames.append(self.next(timeout))
        return frames

    def nothing_for(self, seconds) -> bool:
        try:
            frame = self.next(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {frame}")

    def close(self):
        self.conn.close()


class SseClient:
    """Reads the stream in a thread; events land in a queue as dicts with their `id:` line."""

    def __init__(self, url, token, headers):
        self.events: queue.Queue = queue.Queue()
        self.status = None
        self._ready = threading.Event()
        self._stop = False
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=60))
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **headers}
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _read(self, url, headers):
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                self.headers = response.headers
                if response.status_code != 200:
                    self.body = json.loads(response.read())
                    return
                self._ready.set()
                event = {}
                for line in response.iter_lines():
                    if self._stop:
                        return
                    if line.startswith("id: "):
                        event["sse_id"] = line[4:]
                    elif line.startswith("event: "):
                        event["event"] = line[7:]
                    elif line.startswith("data: "):
                        event.update(json.loads(line[6:]))
                    elif line == "" and event:
                        self.events.put(event)
                        event = {}
                self.events.put({"type": "end"})
        except httpx.HTTPError:
            self.events.put({"type": "end"})
        finally:
            self._ready.set()

    def next(self, timeout=5.0) -> dict:
        return self.events.get(timeout=timeout)

    def until(self, kind, timeout=5.0) -> list[dict]:
        frames = []
        while not frames or frames[-1]["type"] != kind:
            frames.append(self.next(timeout))
        return frames

    def close(self):
        self._stop = True
        self._client.close()
