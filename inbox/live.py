"""The live inbox: WebSocket at /api/v1/inbox/live, Server-Sent Events at /api/v1/inbox/stream.

A plain ASGI app (not Django Channels: our `channels` app owns that import name), mounted by
notifycenter.asgi. The discipline:
- Every event is a row (InboxEvent) numbered per person in commit order (changes.py); the
  number is the event id a client resumes from. The table is the truth, Redis only the fast path.
- Each web process holds one Hub: one Redis pub/sub connection subscribed to the channels of
  the people connected to that process, and a poll of the event table every few seconds that
  catches anything a publish lost (a process killed between commit and publish).
- A connection registers with the hub before it reads where the person stands, and drops any
  event numbered at or below the last it sent; an event numbered past the next one makes it
  read the gap from the table first. So each event reaches it once, in order.
- Heartbeats, an idle timeout (WebSocket), a per-person connection limit (in Redis, so across
  processes) and a close when the token expires.
"""

import asyncio
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from .answers import PLATFORMS, answer_for_platform
from .changes import event_answer, live_channel
from .selectors import (
    inbox_event_heads_since,
    inbox_events_after,
    inbox_events_by_ids,
    inbox_events_last_id,
    inbox_live_state,
)

logger = logging.getLogger(__name__)

WS_PATH = "/api/v1/inbox/live"
SSE_PATH = "/api/v1/inbox/stream"
PATHS = (WS_PATH, SSE_PATH)
REPLAY_PAGE = 500
QUEUE_MAX = 2000  # events waiting for one slow client before it is closed (it resumes from the table)
LAST_EVENT_ID_DIGITS = 18  # a bigint's; longer is no event id (and int() of thousands of digits is slow)
# A client's frames are an auth (a token of a few hundred bytes), a ping; uvicorn takes frames of
# up to 16 MiB, each parsed here on the event loop that serves every connection of the process.
CLIENT_FRAME_MAX = 16 * 1024

# WebSocket close codes (4000-4999 are the application's): the client's next step differs.
CLOSE_UNAUTHORIZED = 4401  # bad or expired token: get a new one, then reconnect
CLOSE_IDLE = 4408  # nothing from the client for LIVE_IDLE_SECONDS: reconnect when active
CLOSE_TOO_SLOW = 4409  # events piled up: reconnect with the last event id
CLOSE_TOO_MANY = 4429  # the person's connection limit: close another first
CLOSE_INVALID = 4400  # a bad platform or last event id: fix the URL or the first frame
CLOSE_TOO_BIG = 1009  # a client frame over CLIENT_FRAME_MAX (RFC 6455's "message too big")


@dataclass(frozen=True)
class Person:
    audience: str
    recipient_id: str
    expires_at: float  # the token's exp, epoch seconds


class LiveError(Exception):
    """A client error with a stable code, answered as the API answers errors."""

    def __init__(self, code: str, message: str, status: int, close_code: int, fields: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.close_code = code, message, status, close_code
        self.fields = fields or {}

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "fields": self.fields}


def _conf(name: str):
    return settings.INBOX_LIVE[name]


async def db(fn, **kwargs):
    """A selector in a worker thread; a connection broken since the last call is replaced, and
    one from the web process's pool (DATABASE_POOL_MAX_SIZE, CONN_MAX_AGE 0) goes back after."""

    def call():
        close_old_connections()
        try:
            return fn(**kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False)()


# Take a slot among the person's connections if fewer than the limit are alive; slots whose
# holder stopped refreshing them (a process killed) expire on their own.
_SLOT_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[4], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class Hub:
    """One per web process: routes each person's events to the connections held here."""

    def __init__(self):
        self.people: dict[tuple[str, str], set] = {}
        self.redis = None
        self.pubsub = None
        self.local_slots: dict[tuple[str, str], int] = {}
        self._started = False
        self._tasks = []
        self.relayed: set[int] = set()  # event table ids handed on lately (poll skips them)
        self._relayed_order = deque()

    async def start(self):
        if self._started:
            return
        self._started = True
        if settings.REDIS_URL:
            # A bounded pool that waits for a free connection: a burst of connects (a node restart
            # brings every client back at once) queues here instead of failing.
            pool = aioredis.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=32, timeout=20)
            self.redis = aioredis.Redis(connection_pool=pool)
            self.slot_script = self.redis.register_script(_SLOT_SCRIPT)
            self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            # A channel of its own keeps the subscription open while nobody is connected.
            await self.pubsub.subscribe(f"{settings.INBOX_LIVE_CHANNEL_PREFIX}-hub-{uuid.uuid4().hex}")
            self._tasks.append(asyncio.create_task(self._listen()))
            self._tasks.append(asyncio.create_task(self._refresh_slots()))
        self._tasks.append(asyncio.create_task(self._poll()))

    async def join(self, conn) -> None:
        key = (conn.person.audience, conn.person.recipient_id)
        first = key not in self.people
        self.people.setdefault(key, set()).add(conn)
        if first and self.pubsub is not None:
            await self.pubsub.subscribe(live_channel(*key))

    async def leave(self, conn) -> None:
        key = (conn.person.audience, conn.person.recipient_id)
        here = self.people.get(key)
        if here is None:
            return
        here.discard(conn)
        if not here:
            del self.people[key]
            if self.pubsub is not None:
                await self.pubsub.unsubscribe(live_channel(*key))

    def dispatch(self, key: tuple[str, str], event: dict) -> None:
        for conn in self.people.get(key, ()):
            conn.offer(event)

    async def _listen(self):
        while True:
            try:
                async for message in self.pubsub.listen():
                    if message["type"] != "message":
                        continue
                    event = json.loads(message["data"])
                    self.relay(event.pop("pk"), (event.pop("audience"), event.pop("recipient_id")), event)
            except (aioredis.RedisError, OSError):
                # Events meanwhile are read from the table by the poll and the gap check.
                logger.warning("live inbox: Redis pub/sub lost; retrying", exc_info=True)
                await asyncio.sleep(1)
                await self._resubscribe()

    async def _resubscribe(self):
        try:
            for key in list(self.people):
                await self.pubsub.subscribe(live_channel(*key))
        except (aioredis.RedisError, OSError):
            logger.warning("live inbox: resubscribe failed", exc_info=True)

    async def _poll(self):
        """Every few seconds, read the heads (id, person) of the last seconds of everyone's events,
        and hand the rows of the ones for people connected here that did not come through Redis
        to their connections. The window re-reads heads because event ids are taken before
        commit: a row may become visible after a higher id did."""
        interval = _conf("POLL_SECONDS") if settings.REDIS_URL else _conf("POLL_SECONDS_WITHOUT_REDIS")
        window = _conf("POLL_WINDOW_SECONDS")
        marks = deque()  # (time, highest id seen then)
        high = await db(inbox_events_last_id)  # from now on: the past is replayed on request
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            while len(marks) > 1 and marks[1][0] < now - window:
                marks.popleft()
            while self._relayed_order and self._relayed_order[0][0] < now - 2 * window:
                self.relayed.discard(self._relayed_order.popleft()[1])
            try:
                if not self.people:
                    high = await db(inbox_events_last_id)
                    marks.clear()
                    continue
                low = marks[0][1] if marks else high
                heads = await db(inbox_event_heads_since, after_id=low)
                high = max([high, *(pk for pk, _, _ in heads)])
                missing = [pk for pk, a, r in heads if (a, r) in self.people and pk not in self.relayed]
                if missing:
                    for row in await db(inbox_events_by_ids, ids=missing):
                        self.relay(row.pk, (row.audience, row.recipient_id), event_answer(row))
            except Exception:
                logger.warning("live inbox: event poll failed", exc_info=True)
            marks.append((now, high))

    def relay(self, pk: int, key: tuple[str, str], event: dict) -> None:
        """Hand an event to the connections here, noting its table id for the poll."""
        self.relayed.add(pk)
        self._relayed_order.append((time.monotonic(), pk))
        self.dispatch(key, event)

    async def _refresh_slots(self):
        """Keep the connection slots of everyone connected here alive, in one pipeline a beat."""
        while True:
            await asyncio.sleep(_conf("HEARTBEAT_SECONDS"))
            ttl = _slot_ttl()
            until = time.time() + ttl
            try:
                pipe = self.redis.pipeline(transaction=False)
                for key, conns in list(self.people.items()):
                    slot_key = _slot_key(Person(*key, expires_at=0))
                    pipe.zadd(slot_key, {conn.id: until for conn in conns}, xx=True)
                    pipe.expire(slot_key, ttl)
                    if len(pipe) >= 2000:
                        await pipe.execute()
                await pipe.execute()
            except (aioredis.RedisError, OSError):
                logger.warning("live inbox: slot refresh failed", exc_info=True)

    async def take_slot(self, person: Person, conn_id: str) -> bool:
        key = (person.audience, person.recipient_id)
        limit = _conf("MAX_CONNECTIONS_PER_PERSON")
        if self.redis is None:
            if self.local_slots.get(key, 0) >= limit:
                return False
            self.local_slots[key] = self.local_slots.get(key, 0) + 1
            return True
        ttl = _slot_ttl()
        return bool(await self.slot_script(keys=[_slot_key(person)], args=[time.time(), conn_id, limit, ttl]))

    async def free_slot(self, person: Person, conn_id: str) -> None:
        key = (person.audience, person.recipient_id)
        if self.redis is None:
            self.local_slots[key] = self.local_slots.get(key, 1) - 1
            if self.local_slots[key] <= 0:
                del self.local_slots[key]
            return
        await self.redis.zrem(_slot_key(person), conn_id)


def _slot_ttl() -> int:
    """A slot outlives three missed heartbeats (whole seconds: Redis EXPIRE takes no fractions)."""
    return math.ceil(_conf("HEARTBEAT_SECONDS") * 3)


def _slot_key(person: Person) -> str:
    return f"nc:live:slots:{person.audience}:{person.recipient_id}"


_hubs: dict[int, Hub] = {}


async def hub() -> Hub:
    """This event loop's hub (one per process under uvicorn; one per loop in tests)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(id(loop))
    if found is None:
        found = _hubs[id(loop)] = Hub()
    await found.start()
    return found


class Connection:
    """One app's live connection; the transport (WebSocket or SSE) sends the frames."""

    def __init__(self, hub: Hub, person: Person, platform: str | None):
        self.hub, self.person, self.platform = hub, person, platform
        self.id = uuid.uuid4().hex
        self.queue: asyncio.Queue = asyncio.Queue()
        self.last = 0
        self.last_heard = time.monotonic()
        self.overflowed = False

    def offer(self, event: dict) -> None:
        """Queue an event for the connection; past QUEUE_MAX one `overflow` ends it (4409). One
        only: a client that stopped reading holds its send for as long as the socket lives, and
        each later event had added a marker of its own."""
        if self.queue.qsize() < QUEUE_MAX:
            self.queue.put_nowait(("event", event))
        elif not self.overflowed:
            self.overflowed = True
            self.queue.put_nowait(("overflow", None))

    async def send(self, frame: dict) -> None:
        raise NotImplementedError

    async def start(self, last_event_id: int | None) -> None:
        """After joining the hub: replay what the client missed, then say where things stand."""
        seq, counts = await db(inbox_live_state, audience=self.person.audience, recipient_id=self.person.recipient_id)
        if last_event_id is None:
            self.last = seq
        elif last_event_id > seq or not await self.catch_up(last_event_id) or self.last < seq:
            # Resuming from before the kept window, or from a number never given: reload.
            return await self.resync()
        else:
            seq, counts = await db(
                inbox_live_state, audience=self.person.audience, recipient_id=self.person.recipient_id
            )
        await self.send({"id": self.last, "type": "ready", "data": {"counts": counts}})

    async def resync(self) -> None:
        """Tell the client to reload its list and counts; events go on from the current number."""
        seq, counts = await db(inbox_live_state, audience=self.person.audience, recipient_id=self.person.recipient_id)
        self.last = max(self.last, seq)
        await self.send({"id": self.last, "type": "resync", "data": {"counts": counts}})

    async def catch_up(self, after: int) -> bool:
        """Send the events after `after` from the table; False if some were already purged."""
        self.last = after
        while True:
            rows = await db(
                inbox_events_after,
                audience=self.person.audience,
                recipient_id=self.person.recipient_id,
                seq=self.last,
                limit=REPLAY_PAGE,
            )
            if rows and rows[0].seq != self.last + 1:
                return False
            for row in rows:
                await self.deliver(event_answer(row))
            if len(rows) < REPLAY_PAGE:
                return True

    async def forward(self, event: dict) -> None:
        """An event from the hub: sent once, in order, a gap filled from the table first."""
        if event["id"] <= self.last:
            return
        if event["id"] > self.last + 1 and not await self.catch_up(self.last):
            return await self.resync()
        if event["id"] > self.last:
            await self.deliver(event)

    async def deliver(self, event: dict) -> None:
        if event["type"] == "message.created":  # links narrowed to the platform, unsafe ones dropped
            event = {
                **event,
                "data": {**event["data"], "message": answer_for_platform(event["data"]["message"], self.platform)},
            }
        await self.send(event)
        self.last = event["id"]

    async def serve(self, last_event_id: int | None, *, idle_seconds: float | None) -> str:
        """The connection's life after `claim`; returns why it ended."""
        try:
            await self.hub.join(self)
            await self.start(last_event_id)
            heartbeat = _conf("HEARTBEAT_SECONDS")
            next_beat = time.monotonic() + heartbeat
            while True:
                now = time.monotonic()
                deadlines = [next_beat, now + (self.person.expires_at - time.time())]
                if idle_seconds:
                    deadlines.append(self.last_heard + idle_seconds)
                try:
                    kind, item = await asyncio.wait_for(self.queue.get(), max(0, min(deadlines) - now))
                except TimeoutError:
                    now = time.monotonic()
                    if time.time() >= self.person.expires_at:
                        return "token_expired"
                    if idle_seconds and now >= self.last_heard + idle_seconds:
                        return "idle"
                    if now >= next_beat:
                        await self.heartbeat()
                        next_beat = now + heartbeat
                    continue
                if kind == "event":
                    await self.forward(item)
                elif kind == "overflow":
                    return "too_slow"
                elif kind == "closed":
                    return "closed"
                elif kind == "client":
                    reason = await self.on_client(item)
                    if reason:
                        return reason
        finally:
            await self.hub.leave(self)
            await self.hub.free_slot(self.person, self.id)

    async def claim(self) -> None:
        """Take one of the person's connection slots, or refuse the connection."""
        if not await self.hub.take_slot(self.person, self.id):
            raise LiveError(
                "too_many_connections",
                f"At most {_conf('MAX_CONNECTIONS_PER_PERSON')} live connections per person.",
                429,
                CLOSE_TOO_MANY,
            )

    async def heartbeat(self) -> None:
        raise NotImplementedError

    async def on_client(self, frame) -> str | None:
        return None


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _query(scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _bearer(headers: dict) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.startswith("Bearer ") else None


def _platform(headers: dict, query: dict) -> str | None:
    value = query.get("platform") or headers.get("x-client-platform")
    if value and value not in PLATFORMS:
        raise LiveError(
            "invalid", "Unknown platform.", 400, CLOSE_INVALID, {"platform": [f"One of {', '.join(PLATFORMS)}."]}
        )
    return value or None


def _last_event_id(value) -> int | None:
    """The event id a client resumes from: a whole number, or its decimal digits (a query string,
    a header, or a JSON string in the first frame). `true`, `1.7` or `Infinity` are not one: int()
    took the first two as 1, and raised on the third past the error answer."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= LAST_EVENT_ID_DIGITS:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise LiveError(
        "invalid",
        "The last event id is not an event id.",
        400,
        CLOSE_INVALID,
        {"last_event_id": ["A whole number ≥ 0."]},
    )


class WebSocketConnection(Connection):
    def __init__(self, hub, person, platform, send, authenticate):
        super().__init__(hub, person, platform)
        self._send = send
        self._authenticate = authenticate

    async def send(self, frame: dict) -> None:
        await self._send({"type": "websocket.send", "text": json.dumps(frame, ensure_ascii=False)})

    async def heartbeat(self) -> None:
        await self.send({"type": "ping"})

    async def on_client(self, text) -> str | None:
        """A client frame: `ping` and `auth` are answered; anything else gets an error frame and
        the connection goes on (a mistake in the app is told, not silently dropped)."""
        self.last_heard = time.monotonic()
        frame = _client_frame(text)
        if isinstance(frame, LiveError):
            await self.send(error_frame(frame))
        elif frame["type"] == "ping":
            await self.send({"type": "pong"})
        else:
            await self.reauthenticate(str(frame.get("token", "")))
        return None

    async def reauthenticate(self, token: str) -> None:
        """A fresh token before the old one expires keeps the connection; it must name the same
        person. A refused one ends the connection (LiveError, 4401)."""
        person = self._authenticate(token)
        if (person.audience, person.recipient_id) != (self.person.audience, self.person.recipient_id):
            raise LiveError("token_other_person", "The token names another person.", 401, CLOSE_UNAUTHORIZED)
        self.person = person
        await self.send({"type": "auth_ok", "expires_at": int(person.expires_at)})


CLIENT_FRAME_TYPES = ("ping", "auth")


def _client_frame(text: str) -> dict | LiveError:
    """A client frame read, or the error to answer it with. Only one too big to read ends the
    connection (raised); one that is not JSON, or not a known type, is answered."""
    if len(text) > CLIENT_FRAME_MAX:
        raise LiveError("payload_too_large", f"A frame is at most {CLIENT_FRAME_MAX} bytes.", 413, CLOSE_TOO_BIG)
    try:
        frame = json.loads(text)
    except ValueError:
        return LiveError("malformed_json", "A frame is a JSON object.", 400, CLOSE_INVALID)
    if not isinstance(frame, dict) or frame.get("type") not in CLIENT_FRAME_TYPES:
        return LiveError(
            "invalid", "Unknown frame.", 400, CLOSE_INVALID, {"type": [f"One of {', '.join(CLIENT_FRAME_TYPES)}."]}
        )
    return frame


def error_frame(err: LiveError) -> dict:
    """An error as a WebSocket frame: the API's error shape, with the type `error`."""
    return {"type": "error", **err.body()}


async def websocket_endpoint(scope, receive, send, authenticate: Callable[[str], Person]):
    """WebSocket: the token in the Authorization header, or in a first frame
    {"type": "auth", "token": …, "last_event_id": …} from clients that cannot set headers."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    headers, query = _headers(scope), _query(scope)
    try:
        platform = _platform(headers, query)
        last_event_id = _last_event_id(query.get("last_event_id"))
        token = _bearer(headers)
        if token is None:
            try:
                first = await asyncio.wait_for(receive(), _conf("AUTH_SECONDS"))
            except TimeoutError:
                raise LiveError("not_authenticated", "Send the token first.", 401, CLOSE_UNAUTHORIZED) from None
            if first["type"] != "websocket.receive":
                return
            frame = _client_frame(first.get("text") or "")
            if isinstance(frame, LiveError) or frame.get("type") != "auth":
                raise LiveError(
                    "not_authenticated",
                    'The first frame must be {"type": "auth", "token": …}.',
                    401,
                    CLOSE_UNAUTHORIZED,
                )
            token = str(frame.get("token", ""))
            if frame.get("last_event_id") is not None:
                last_event_id = _last_event_id(frame["last_event_id"])
        person = authenticate(token)
        conn = WebSocketConnection(await hub(), person, platform, send, authenticate)
        await conn.claim()
    except LiveError as err:
        await send({"type": "websocket.send", "text": json.dumps(error_frame(err))})
        await send({"type": "websocket.close", "code": err.close_code})
        return

    async def read_frames():
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                conn.queue.put_nowait(("closed", None))
                return
            conn.queue.put_nowait(("client", message.get("text") or ""))

    reader = asyncio.create_task(read_frames())
    try:
        reason = await conn.serve(last_event_id, idle_seconds=_conf("IDLE_SECONDS"))
        if reason == "token_expired":
            raise LiveError("token_expired", "The token has expired.", 401, CLOSE_UNAUTHORIZED)
        codes = {"idle": CLOSE_IDLE, "too_slow": CLOSE_TOO_SLOW}
        if reason in codes:
            await send({"type": "websocket.close", "code": codes[reason]})
    except LiveError as err:
        await send({"type": "websocket.send", "text": json.dumps(error_frame(err))})
        await send({"type": "websocket.close", "code": err.close_code})
    except OSError:
        pass  # the client went away mid-send
    finally:
        reader.cancel()


class StreamConnection(Connection):
    def __init__(self, hub, person, platform, send):
        super().__init__(hub, person, platform)
        self._send = send

    async def send(self, frame: dict) -> None:
        lines = [f"id: {frame['id']}"] if "id" in frame else []
        lines += [f"event: {frame['type']}", "data: " + json.dumps(frame, ensure_ascii=False), "", ""]
        await self._send({"type": "http.response.body", "body": "\n".join(lines).encode(), "more_body": True})

    async def heartbeat(self) -> None:
        await self._send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})


async def _json_response(send, status: int, body: dict, extra=()):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _cors(headers: dict) -> list[tuple[bytes, bytes]]:
    """What lets an H5 page on another origin read the stream with fetch() (EventSource cannot
    send the token), when its origin is one the hospital listed (INBOX_CORS_ALLOWED_ORIGINS, the
    REST inbox's list too); nothing for any other origin, so the browser refuses it."""
    origin = headers.get("origin", "")
    if origin and origin in settings.CORS_ALLOWED_ORIGINS:
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]
    return []


async def _preflight(send, headers: dict) -> None:
    """A browser's question before a cross-origin GET with a token: answered for listed origins."""
    cors = _cors(headers)
    if cors:
        cors += [
            (b"access-control-allow-methods", b"GET"),
            # The REST inbox's lists (settings.py): one list of headers and one cache time for both.
            (b"access-control-allow-headers", ", ".join(settings.CORS_ALLOW_HEADERS).encode("latin-1")),
            (b"access-control-max-age", str(settings.CORS_PREFLIGHT_MAX_AGE).encode("latin-1")),
        ]
    await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", b"GET, OPTIONS"), *cors]})
    await send({"type": "http.response.body", "body": b""})


async def stream_endpoint(scope, receive, send, authenticate: Callable[[str], Person]):
    """Server-Sent Events: `Authorization: Bearer`, resuming from `Last-Event-ID` (or the query
    parameter `last_event_id`); each event has an `id:` line."""
    headers, query = _headers(scope), _query(scope)
    if scope["method"] == "OPTIONS":
        await _preflight(send, headers)
        return
    if scope["method"] != "GET":
        body = {"code": "method_not_allowed", "message": "GET only.", "fields": {}}
        await _json_response(send, 405, body, [(b"allow", b"GET, OPTIONS"), *_cors(headers)])
        return
    try:
        platform = _platform(headers, query)
        last_event_id = _last_event_id(headers.get("last-event-id") or query.get("last_event_id"))
        token = _bearer(headers)
        if token is None:
            raise LiveError("not_authenticated", "Authorization: Bearer <token> is required.", 401, CLOSE_UNAUTHORIZED)
        person = authenticate(token)
        conn = StreamConnection(await hub(), person, platform, send)
        await conn.claim()
    except LiveError as err:
        extra = [(b"www-authenticate", b"Bearer")] if err.status == 401 else []
        await _json_response(send, err.status, err.body(), [*extra, *_cors(headers)])
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
                *_cors(headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})

    async def wait_disconnect():
        while (await receive())["type"] != "http.disconnect":
            pass
        conn.queue.put_nowait(("closed", None))

    watcher = asyncio.create_task(wait_disconnect())
    try:
        reason = await conn.serve(last_event_id, idle_seconds=None)
        if reason == "token_expired":
            await conn.send({"type": "token_expired", "data": {"message": "The token has expired."}})
        if reason != "closed":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except LiveError as err:
        await conn.send({"type": "error", "data": err.body()})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass
    finally:
        watcher.cancel()


def live_app(authenticate: Callable[[str], Person]):
    """The ASGI app for the two live paths; `authenticate` turns a token into a Person or
    raises LiveError (the project layer supplies it: it owns the JWT settings)."""

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            if scope["path"] == WS_PATH:
                await websocket_endpoint(scope, receive, send, authenticate)
            else:
                await send({"type": "websocket.close", "code": 1000})  # the handshake refused: 403
        elif scope["path"] == SSE_PATH:
            await stream_endpoint(scope, receive, send, authenticate)
        else:
            await upgrade_required(send)

    return app


async def upgrade_required(send):
    """A plain HTTP request to the WebSocket path (a client without the upgrade, or a proxy that
    drops it): answered 426 in the API's error shape, not with an event stream."""
    body = {
        "code": "upgrade_required",
        "message": f"{WS_PATH} is a WebSocket; Server-Sent Events are at {SSE_PATH}.",
        "fields": {},
    }
    await _json_response(send, 426, body, [(b"upgrade", b"websocket")])
