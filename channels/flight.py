"""Provider sends on an event loop: a chunk claimed, opened, sent and settled together.

1. Claim: one UPDATE … RETURNING takes the chunk's queued, due rows (SKIP LOCKED) under one lease;
   `chunk_load` is the one place the claimed rows are read, their real addresses filled in memory.
2. Prepare (JPush cids) as steps, all in flight at once; a failed prepare ends that try.
3. Open: ONE statement extends the whole chunk's lease and inserts every attempt (`pending`, with
   its provider key), committed before any request leaves. A row no longer ours gets no attempt.
   Each backend's steps have built their first request just before (the blocking parts: a cached
   token, a consent taken, a code unsealed, outside the loop); a row lost meanwhile has its
   request withdrawn (the steps are told it never left, and give back what they took).
4. Send: every request of a round leaves at once on the loop; answers go back to the steps, and a
   step that needs another call (a refreshed token) makes a second round. Deliveries a provider
   can take in one request (identical Tencent SMS, up to 200 numbers) go as one (`batches`), each
   with its own attempt (the batch's key) and result; a member lost before the open holds the
   whole request back.
5. Settle in one transaction: rows locked and checked still ours (else a late answer, kept on the
   attempt and not applied, as in channels/sending.py), `apply_result` on each (backoff, routing,
   OTP release), one UPDATE … FROM unnest(…) for the deliveries, one for the attempts, one INSERT
   of status-change rows. A crash anywhere leaves open attempts: unknown, reconciled, not resent.
"""

import asyncio
import atexit
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

import aiohttp
import uvloop
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Case, F, Max, When
from django.utils import timezone

from .addresses import deliveries_fill_addresses
from .models import (
    AttemptKind,
    AttemptOutcome,
    ChangeSource,
    ChannelAccount,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from .providers import DeliveryResult, backend_for
from .providers.http import HttpRequest, ProviderHttpError, Steps, observe, parse_answer
from .routing import reroute_disabled
from .rows import binding_cursor
from .sending import ATTEMPT_SETTLED_FIELDS, SETTLED_FIELDS, _claim, _log, _next_number, apply_result, lease
from .timeline import status_changes_record

logger = logging.getLogger(__name__)

D = Delivery._meta.db_table
A = DeliveryAttempt._meta.db_table


@dataclass
class Flight:
    """One claimed delivery on its way: its backend, attempt, result and timing."""

    delivery: Delivery
    backend: object
    started_at: object = None
    attempt_id: int | None = None
    result: DeliveryResult | None = None
    t0: float = 0.0
    duration_ms: int = 0
    prepared: DeliveryResult | None = field(default=None)
    key: str | None = None  # the provider key of the batch it goes in (None: its own request)


def chunk_send(ids: list[int]) -> int:
    """Send the queued, due ones of these remote deliveries together; returns how many were claimed."""
    claim, rows = chunk_claim(ids)
    if not rows:
        return 0
    flights = [Flight(d, backend_for(d.channel)) for d in rows]
    for flight in flights:
        flight.started_at, flight.t0 = timezone.now(), time.monotonic()
    _prepare(flights)
    going = [f for f in flights if f.prepared is None]
    requests = batches(going)
    # Each first request built (the blocking parts: a cached token, a consent taken, a code
    # unsealed) before the attempts are opened, so that they are opened right before the calls
    # leave: a crash or a database cut while building leaves nothing ambiguous behind.
    rounds = Rounds([_send_steps(group) for group in requests])
    rounds.start()
    try:
        opened = _open_attempts(claim, [d.pk for d in rows], going)
    except BaseException:
        rounds.withdraw_all(NOT_SENT)
        raise
    for i, group in enumerate(requests):
        for flight in group:
            flight.attempt_id = opened.get(flight.delivery.pk)
        # A member no longer ours (the scan took it back): the request naming it never leaves;
        # the members still ours settle as not sent and are tried again.
        if any(f.attempt_id is None for f in group):
            rounds.withdraw(i, NOT_SENT)
    values = rounds.finish()
    now = time.monotonic()
    for group, value in zip(requests, values, strict=True):
        for flight, result in zip(group, value if isinstance(value, list) else [value], strict=True):
            if flight.attempt_id is not None:
                flight.result = result
    for flight in flights:
        if flight.prepared is not None:
            flight.result = flight.prepared
        flight.duration_ms = int((now - flight.t0) * 1000)
    _settle(claim, [f for f in flights if f.result is not None])
    return len(rows)


def batches(going: list[Flight]) -> list[list[Flight]]:
    """The chunk's requests: deliveries whose backend gives them the same batch key, cut into
    groups of at most its `batch_limit` distinct addresses (a second delivery to one address goes
    in another group); every other delivery alone. Each group of many gets its batch's key."""
    requests: list[list[Flight]] = []
    open_groups: dict[tuple, list[tuple[list[Flight], set]]] = {}
    for flight in going:
        backend = flight.backend
        key = _batch_key(flight)
        if key is None:
            requests.append([flight])
            continue
        address = backend.batch_address(flight.delivery)
        groups = open_groups.setdefault((type(backend), key), [])
        group = next((g for g in groups if address not in g[1] and len(g[0]) < backend.batch_limit), None)
        if group is None:
            group = ([], set())
            groups.append(group)
            requests.append(group[0])
        group[0].append(flight)
        group[1].add(address)
    for group in requests:
        if len(group) > 1:
            key = group[0].backend.batch_provider_key([f.delivery for f in group])
            for flight in group:
                flight.key = key
    return requests


def _batch_key(flight: Flight):
    if flight.backend.batch_limit < 2 or not settings.PROVIDER_BATCHING:
        return None
    try:
        return flight.backend.batch_key(flight.delivery)
    except Exception:  # a bug of ours: this delivery goes alone
        logger.exception("delivery %s: batch_key raised", flight.delivery.pk)
        return None


def _send_steps(group: list[Flight]) -> Steps:
    """One request's steps: a delivery's own, or a batch's (a result per member)."""
    first = group[0]
    if len(group) == 1:
        return _guarded(first.backend.send_steps(first.delivery), first.delivery)
    deliveries = [f.delivery for f in group]
    steps = first.backend.send_batch_steps(deliveries, first.key)
    return _guarded(steps, first.delivery, many=len(group), batch=True)


def _prepare(flights: list[Flight]) -> None:
    """Every `prepare` of the chunk in flight together: a backend that prepares a chunk at once
    (JPush: many cids a call) gets its deliveries together, the others one steps each."""
    steps, owners = [], []
    by_backend: dict[type, list[Flight]] = {}
    for flight in flights:
        by_backend.setdefault(type(flight.backend), []).append(flight)
    for group in by_backend.values():
        chunk_steps = group[0].backend.prepare_chunk_steps([f.delivery for f in group])
        if chunk_steps is None:
            steps += [_guarded(f.backend.prepare_steps(f.delivery), f.delivery) for f in group]
            owners += [[f] for f in group]
        else:
            steps.append(_guarded(chunk_steps, group[0].delivery, many=len(group)))
            owners.append(group)
    for group, value in zip(owners, run_steps(steps), strict=True):
        for flight, result in zip(group, value if isinstance(value, list) else [value], strict=True):
            flight.prepared = result


def chunk_claim(ids: list[int]) -> tuple[str, list[Delivery]]:
    """Claim the queued, due ones among these ids in one statement, under one lease; then load them."""
    if not _postgresql():
        return _claim(ids)  # the embedded SQLite (`make run`): one writer, the ORM's way
    now = timezone.now()
    claim = secrets.token_hex(8)
    with binding_cursor() as cursor:
        cursor.execute(
            f"UPDATE {D} SET status = %s, claim = %s, lease_until = %s, updated_at = %s "  # noqa: S608 (names are ours)
            f"WHERE id IN (SELECT id FROM {D} WHERE id = ANY(%b::bigint[]) AND status = %s AND not_before <= %s "
            "ORDER BY id FOR UPDATE SKIP LOCKED) RETURNING id",
            [DeliveryStatus.SENDING, claim, now + lease(), now, list(ids), DeliveryStatus.QUEUED, now],
        )
        claimed = [pk for (pk,) in cursor.fetchall()]
    return claim, chunk_load(claimed)


def chunk_load(ids: list[int]) -> list[Delivery]:
    """The claimed rows, with what their backends read (recipient, account), each with its real
    address put on it in memory from the directory (the table keeps a masked copy).

    The accounts are read once per chunk, each once however many rows name it, and shared by
    them: a chunk has a handful of accounts, and joining them made (and decrypted the
    credentials of) one account per row, a sixth of a delivery's CPU (bench/README.md)."""
    if not ids:
        return []
    rows = list(Delivery.objects.select_related("recipient").filter(pk__in=ids).order_by("pk"))
    account = Delivery._meta.get_field("account")
    accounts = ChannelAccount.objects.in_bulk({row.account_id for row in rows} - {None})
    for row in rows:
        account.set_cached_value(row, accounts.get(row.account_id))
    reroute_disabled(rows)
    deliveries_fill_addresses(rows)  # the recipients came with the rows: no query
    return rows


def _open_attempts(claim: str, chunk: list[int], going: list[Flight]) -> dict[int, int]:
    """ONE statement: the chunk's lease extended and an attempt inserted for each delivery about
    to be called, only where the claim is still ours. Returns delivery id → attempt id."""
    if not going:
        return {}
    keys = [f.backend.provider_key(f.delivery) if f.key is None else f.key for f in going]
    if not _postgresql():
        return _open_attempts_portable(claim, chunk, going, keys)
    with binding_cursor() as cursor:
        cursor.execute(
            f"WITH ours AS (UPDATE {D} SET lease_until = %s, "  # noqa: S608 (names are ours)
            "attempt_count = attempt_count + (CASE WHEN id = ANY(%b::bigint[]) THEN 1 ELSE 0 END) "
            "WHERE id = ANY(%b::bigint[]) AND claim = %s AND status = %s RETURNING id) "
            f"INSERT INTO {A} (delivery_id, number, kind, provider_key, started_at, duration_ms, outcome, "
            "error_code, error_message, provider_message_id) "
            f"SELECT k.id, COALESCE((SELECT max(x.number) FROM {A} x WHERE x.delivery_id = k.id), 0) + 1, "
            "%s, k.key, k.started, 0, %s, '', '', '' "
            "FROM unnest(%b::bigint[], %b::text[], %b::timestamptz[]) AS k(id, key, started) "
            "JOIN ours ON ours.id = k.id RETURNING delivery_id, id",
            [
                timezone.now() + lease(),
                [f.delivery.pk for f in going],
                chunk,
                claim,
                DeliveryStatus.SENDING,
                AttemptKind.SEND,
                AttemptOutcome.PENDING,
                [f.delivery.pk for f in going],
                keys,
                [f.started_at for f in going],
            ],
        )
        return dict(cursor.fetchall())


def _open_attempts_portable(claim: str, chunk: list[int], going: list[Flight], keys: list[str]) -> dict[int, int]:
    """The same through the ORM, in one transaction (SQLite has neither arrays nor data-modifying
    WITH): the rows still ours, their lease and counts, the next numbers, the attempts."""
    opening = [f.delivery.pk for f in going]
    with transaction.atomic():
        ours = set(
            Delivery.objects.filter(pk__in=chunk, claim=claim, status=DeliveryStatus.SENDING).values_list(
                "pk", flat=True
            )
        )
        Delivery.objects.filter(pk__in=ours).update(
            lease_until=timezone.now() + lease(),
            attempt_count=Case(
                When(pk__in=opening, then=F("attempt_count") + 1),
                default=F("attempt_count"),
                output_field=models.PositiveIntegerField(),
            ),
        )
        tops = dict(
            DeliveryAttempt.objects.filter(delivery_id__in=opening)
            .values("delivery_id")
            .annotate(top=Max("number"))
            .values_list("delivery_id", "top")
        )
        attempts = DeliveryAttempt.objects.bulk_create(
            [
                DeliveryAttempt(
                    delivery_id=f.delivery.pk,
                    number=tops.get(f.delivery.pk, 0) + 1,
                    kind=AttemptKind.SEND,
                    provider_key=key,
                    started_at=f.started_at,
                    outcome=AttemptOutcome.PENDING,
                )
                for f, key in zip(going, keys, strict=True)
                if f.delivery.pk in ours
            ]
        )
    return {a.delivery_id: a.pk for a in attempts}


def _settle(claim: str, flights: list[Flight]) -> None:
    """Every answer of the chunk, in one transaction: the rows still ours settle in bulk; an answer
    for a row taken back (our lease ran out) is kept on its attempt and not applied, unless the
    scan only turned it unknown and it is not reconciled yet: then this answer is the truth."""
    if not flights:
        return
    now = timezone.now()
    with transaction.atomic():
        current = _lock([f.delivery.pk for f in flights])
        settled: list[Flight] = []
        for flight in flights:
            delivery, result = flight.delivery, flight.result
            row = current.get(delivery.pk)
            ours = row is not None and (
                row[0] == claim or (row[1] == DeliveryStatus.UNKNOWN and row[2] is None and not row[0])
            )
            if not ours:
                logger.warning("delivery %s: an answer came after the row was taken back: %s", delivery.pk, result.code)
                if flight.attempt_id is not None:
                    DeliveryAttempt.objects.filter(pk=flight.attempt_id).update(
                        error_message=f"late answer, not applied: {result.outcome} {result.code} {result.message}"[
                            :2000
                        ],
                        raw_response=result.raw or None,
                    )
                continue
            # A try that ended before its attempt was opened (prepare failed) still counts as one.
            delivery.attempt_count = row[3] + (1 if flight.attempt_id is None else 0)
            apply_result(delivery, result, now=now, started_at=flight.started_at)
            settled.append(flight)
        if not settled:
            return
        _update_deliveries([f.delivery for f in settled])
        _update_attempts([f for f in settled if f.attempt_id is not None], now)
        for flight in settled:
            if flight.attempt_id is None:  # prepare ended the try (rare): its attempt written now
                _insert_attempt(flight, now)
        status_changes_record(
            changes=[(f.delivery.pk, f.delivery.status) for f in settled],
            at=now,
            source=ChangeSource.SEND,
            codes={f.delivery.pk: f.result.code for f in settled},
        )
    for flight in settled:
        _log(flight.delivery, flight.result)


def _lock(ids: list[int]) -> dict[int, tuple]:
    """The rows locked in id order: id → (claim, status, finished_at, attempt_count)."""
    if not _postgresql():
        rows = (
            Delivery.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", "claim", "status", "finished_at", "attempt_count")
        )
        return {row[0]: row[1:] for row in rows}
    with binding_cursor() as cursor:
        cursor.execute(
            f"SELECT id, claim, status, finished_at, attempt_count FROM {D} "  # noqa: S608 (names are ours)
            "WHERE id = ANY(%b::bigint[]) ORDER BY id FOR UPDATE",
            [ids],
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _update_deliveries(deliveries: list[Delivery]) -> None:
    if not _postgresql():
        Delivery.objects.bulk_update(deliveries, SETTLED_FIELDS)
        return
    columns = (
        ("id", "bigint", lambda d: d.pk),
        ("status", "text", lambda d: d.status),
        ("attempt_count", "integer", lambda d: d.attempt_count),
        ("claim", "text", lambda d: d.claim),
        ("lease_until", "timestamptz", lambda d: d.lease_until),
        ("duplicate_of_id", "bigint", lambda d: d.duplicate_of_id),
        ("last_error_code", "text", lambda d: d.last_error_code),
        ("last_error_message", "text", lambda d: d.last_error_message),
        ("provider_message_id", "text", lambda d: d.provider_message_id),
        ("not_before", "timestamptz", lambda d: d.not_before),
        ("enqueued_at", "timestamptz", lambda d: d.enqueued_at),
        ("finished_at", "timestamptz", lambda d: d.finished_at),
        ("updated_at", "timestamptz", lambda d: d.updated_at),
    )
    _update_from_arrays(D, columns, deliveries)


def _update_attempts(flights: list[Flight], now) -> None:
    if not flights:
        return
    if not _postgresql():
        DeliveryAttempt.objects.bulk_update(
            [
                DeliveryAttempt(
                    pk=f.attempt_id,
                    outcome=f.result.outcome,
                    error_code=f.result.code[:64],
                    error_message=f.result.message,
                    raw_response=f.result.raw or None,
                    provider_message_id=f.result.provider_message_id[:128],
                    duration_ms=f.duration_ms,
                    settled_at=now,
                )
                for f in flights
            ],
            ATTEMPT_SETTLED_FIELDS,
        )
        return
    columns = (
        ("id", "bigint", lambda f: f.attempt_id),
        ("outcome", "text", lambda f: f.result.outcome),
        ("error_code", "text", lambda f: f.result.code[:64]),
        ("error_message", "text", lambda f: f.result.message),
        ("raw_response", "jsonb", lambda f: json.dumps(f.result.raw, ensure_ascii=False) if f.result.raw else None),
        ("provider_message_id", "text", lambda f: f.result.provider_message_id[:128]),
        ("duration_ms", "integer", lambda f: f.duration_ms),
        ("settled_at", "timestamptz", lambda f: now),
    )
    _update_from_arrays(A, columns, flights)


def _update_from_arrays(table: str, columns, items) -> None:
    """UPDATE table SET … FROM unnest(one array per column): any number of rows, one statement,
    bound on the server in binary (rows.binding_cursor). A column whose rows all take one value
    (a settled chunk's claim, lease, times, most of its statuses and codes) is bound once, as a
    scalar: psycopg dumps an array element by element in Python, a tenth of a chunk's CPU."""
    sets, arrays, names, scalars, vectors = [], [], [], [], []
    for i, (name, kind, get) in enumerate(columns):
        values = [get(item) for item in items]
        cast = f"::text::{kind}" if kind == "jsonb" else f"::{kind}"
        if i and values.count(values[0]) == len(values):
            sets.append(f"{name} = %b{cast}")
            scalars.append(values[0])
            continue
        if i:
            sets.append(f"{name} = v.{name}")
        arrays.append(f"%b::text[]::{kind}[]" if kind == "jsonb" else f"%b::{kind}[]")
        names.append(name)
        vectors.append(values)
    with binding_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {', '.join(sets)} "  # noqa: S608 (names are ours)
            f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) WHERE t.id = v.id",
            [*scalars, *vectors],
        )


def _postgresql() -> bool:
    """Arrays, unnest and data-modifying WITH: one statement per step. Elsewhere (the embedded
    SQLite of `make run`) the ORM's statements do the same in a few more."""
    return connection.vendor == "postgresql"


def _insert_attempt(flight: Flight, now) -> None:
    result = flight.result
    DeliveryAttempt.objects.create(
        delivery=flight.delivery,
        number=_next_number(flight.delivery.pk),
        kind=AttemptKind.SEND,
        started_at=flight.started_at,
        settled_at=now,
        duration_ms=flight.duration_ms,
        outcome=result.outcome,
        error_code=result.code[:64],
        error_message=result.message,
        raw_response=result.raw or None,
        provider_message_id=result.provider_message_id[:128],
    )


def _guarded(steps: Steps, delivery: Delivery, many: int = 0, *, batch: bool = False) -> Steps:
    """A bug of ours inside a backend's steps is that delivery's transient result (each one's, for
    steps of `many`), not the chunk's end (as channels/sending.py's _call). In a batch's steps
    (many people at once) a bug after the request may have left (an answer came, or a timeout) is
    unknown instead: each member is reconciled, not sent again."""
    left = False
    try:
        request = next(steps)
        while True:
            try:
                answer = yield request
            except ProviderHttpError as err:
                left = left or err.result.outcome == AttemptOutcome.UNKNOWN
                request = steps.throw(err)
            else:
                left = True
                request = steps.send(answer)
    except StopIteration as stop:
        return stop.value
    except Exception as err:
        logger.exception("delivery %s: %s raised", delivery.pk, getattr(steps, "__qualname__", steps))
        outcome = AttemptOutcome.UNKNOWN if batch and left else AttemptOutcome.TRANSIENT
        result = DeliveryResult(outcome, "internal_error", repr(err))
        return [result] * many if many else result


# What a backend's steps are told when the request they built will not leave (the row is no
# longer ours): the same as a connection refused, so what they took (a consent) goes back.
NOT_SENT = DeliveryResult(AttemptOutcome.TRANSIENT, "not_sent", "The request was built but not sent.")


class Rounds:
    """Many backends' steps run together: each round's requests all leave at once on the event
    loop; the steps themselves (building, reading answers) run here, outside it."""

    def __init__(self, all_steps: list[Steps]):
        self.steps = all_steps
        self.values: list = [None] * len(all_steps)
        self.waiting: dict[int, HttpRequest] = {}

    def _advance(self, i: int, move) -> None:
        try:
            self.waiting[i] = move()
        except StopIteration as stop:
            self.values[i] = stop.value

    def start(self) -> None:
        """Each steps up to its first request (built, not sent), or to its end."""
        for i, steps in enumerate(self.steps):
            self._advance(i, steps.__next__)

    def withdraw(self, i: int, why: DeliveryResult) -> None:
        """Steps `i`'s requests never leave: each is answered with `why` until the steps end."""
        while i in self.waiting:
            del self.waiting[i]
            self._advance(i, lambda s=self.steps[i]: s.throw(ProviderHttpError(why)))

    def withdraw_all(self, why: DeliveryResult) -> None:
        for i in list(self.waiting):
            self.withdraw(i, why)

    def finish(self) -> list:
        """Rounds until every steps has ended; each steps' value, in order."""
        while self.waiting:
            round_ = list(self.waiting.items())
            self.waiting.clear()
            answers = loop_runner().run(_fetch_all([request for _, request in round_]))
            for (i, _), answer in zip(round_, answers, strict=True):
                steps = self.steps[i]
                if isinstance(answer, ProviderHttpError):
                    self._advance(i, lambda s=steps, a=answer: s.throw(a))
                else:
                    self._advance(i, lambda s=steps, a=answer: s.send(a))
        return self.values


def run_steps(all_steps: list[Steps]) -> list:
    """Run many backends' steps together to their end; each steps' value, in order."""
    rounds = Rounds(all_steps)
    rounds.start()
    return rounds.finish()


class LoopRunner:
    """An event loop (uvloop) in a thread of its own and its HTTP session (aiohttp: a connection
    pool per provider host), kept for the life of the process: connections stay alive from one
    chunk to the next, and a caller whose own thread already runs a loop (an eager task inside
    an ASGI request, a browser test's driver) is served all the same. aiohttp, not httpx: httpx's
    async pool cost 2.6-9 ms of CPU per call here, growing with the calls in flight
    (bench/README.md), more than the whole delivery is allowed."""

    def __init__(self):
        self.loop = uvloop.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        threading.Thread(target=self.loop.run_forever, name="provider-loop", daemon=True).start()
        self.pid = os.getpid()
        atexit.register(self.close)

    def close(self) -> None:
        """Kept-alive connections closed as the process ends (not a forked child's copy)."""
        if self.session is not None and os.getpid() == self.pid:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.session.close(), self.loop).result(timeout=2)

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def open_session(self) -> aiohttp.ClientSession:
        if self.session is None:  # made on the loop, as aiohttp wants
            most = settings.PROVIDER_MAX_IN_FLIGHT
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=most, limit_per_host=most), auto_decompress=True
            )
        return self.session


_runner: tuple[int, LoopRunner] | None = None
_runner_lock = threading.Lock()


def loop_runner() -> LoopRunner:
    """This process's runner (a forked child makes its own)."""
    global _runner
    with _runner_lock:
        if _runner is None or _runner[0] != os.getpid():
            _runner = (os.getpid(), LoopRunner())
        return _runner[1]


async def _fetch_all(requests: list[HttpRequest]) -> list:
    session = await loop_runner().open_session()
    connect, read = settings.PROVIDER_TIMEOUT  # read per chunk: the lease is derived from the same
    # `connect` includes the wait for a free connection: a request that never left, transient.
    timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)
    return await asyncio.gather(*(fetch(session, r, timeout) for r in requests))


async def fetch(
    session: aiohttp.ClientSession, request: HttpRequest, timeout: aiohttp.ClientTimeout
) -> dict | ProviderHttpError:
    """One call on the loop: the JSON object answered, or the ProviderHttpError it ended in, with
    the same outcomes as the blocking client (channels/providers/http.py: call_blocking)."""
    started = time.perf_counter()
    try:
        async with session.request(
            request.method, request.url, data=request.body, headers=request.headers, timeout=timeout
        ) as response:
            status, data = response.status, await response.read()
    except aiohttp.ConnectionTimeoutError as err:  # never connected (or no free connection): nothing left
        result = DeliveryResult(AttemptOutcome.TRANSIENT, "connect_timeout", repr(err))
    except aiohttp.ClientConnectorError as err:  # refused, unreachable: nothing left
        result = DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))
    except (aiohttp.SocketTimeoutError, TimeoutError) as err:
        # The request left; the provider may act on it after we stopped waiting.
        result = DeliveryResult(AttemptOutcome.UNKNOWN, "timeout", repr(err))
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as err:
        # The connection broke with the request sent or half sent: the outcome is unknown.
        result = DeliveryResult(AttemptOutcome.UNKNOWN, "connection_lost", repr(err))
    except aiohttp.ClientError as err:
        result = DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))
    else:
        observe(request, started, f"http_{status // 100}xx")
        try:
            return parse_answer(status, data)
        except ProviderHttpError as err:
            return err
    observe(request, started, result.code)
    return ProviderHttpError(result)
