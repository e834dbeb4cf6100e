"""The shared HTTP part of provider backends (anymail's base_requests): the account's base URL
(the fake provider server in sandbox), timeouts, and transport failures normalized as results with
their own words.

A send is written once as *steps*: a generator that yields each `HttpRequest` it needs and is
sent back the JSON object answered (or has `ProviderHttpError` thrown in). `drive` runs the steps
with the blocking client of this module (urllib3, pooled per process: a third of httpx's CPU per
request on the threaded path); channels/flight.py runs the same steps of a whole chunk at once on
an event loop (httpx.AsyncClient). Building the request and reading the answer are shared; only
the transport differs.
"""

import base64
import json as jsonlib
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import urllib3
from django.conf import settings

from ..metrics import PROVIDER_SECONDS
from ..models import AttemptOutcome, ChannelAccount
from .base import Backend, DeliveryResult

_pool: urllib3.PoolManager | None = None


def http() -> urllib3.PoolManager:
    global _pool
    if _pool is None:
        # Kept-alive connections per provider host, as many as a threaded worker sends at once.
        _pool = urllib3.PoolManager(num_pools=20, maxsize=64, block=False, retries=False)
    return _pool


def timeout() -> urllib3.Timeout:
    """settings.PROVIDER_TIMEOUT: (connect, read) seconds. The engine's lease is derived from it."""
    connect, read = settings.PROVIDER_TIMEOUT
    return urllib3.Timeout(connect=connect, read=read)


class ProviderHttpError(Exception):
    """The provider could not be reached, or answered with an HTTP error; carries a result."""

    def __init__(self, result: DeliveryResult):
        super().__init__(result.message)
        self.result = result


@dataclass(frozen=True)
class HttpRequest:
    """One provider call, built and ready to leave; `label` names it in the latency metric."""

    method: str
    url: str
    body: bytes | None = None
    headers: dict = field(default_factory=dict)
    channel: str = ""
    provider: str = ""


# What a backend's steps are: requests out, JSON objects in, a result (or any value) at the end.
Steps = Generator[HttpRequest, dict, object]


def build_request(
    method: str,
    url: str,
    *,
    params: dict | None = None,
    json=None,
    data: dict | None = None,
    content: bytes | None = None,
    headers: dict | None = None,
    auth: tuple[str, str] | None = None,
) -> HttpRequest:
    """`params` in the query, a body as `json`, form `data` or raw `content`, HTTP basic `auth`."""
    if params:
        url = f"{url}?{urlencode(params)}"
    sent_headers = dict(headers or {})
    body = content
    if json is not None:
        body = jsonlib.dumps(json, ensure_ascii=False).encode()
        sent_headers.setdefault("Content-Type", "application/json; charset=utf-8")
    elif data is not None:
        body = urlencode(data).encode()
        sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if auth is not None:
        sent_headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return HttpRequest(method, url, body, sent_headers)


def parse_answer(status: int, data: bytes) -> dict:
    """The JSON object answered; raises ProviderHttpError with a result: transient when the
    provider said it failed (5xx, an answer that is not a JSON object), unknown on 504 (a gateway
    gave up waiting: the provider may still act on it)."""
    text = data.decode("utf-8", errors="replace")
    if status == 504:
        raise ProviderHttpError(DeliveryResult(AttemptOutcome.UNKNOWN, "http_504", text[:500]))
    if status >= 500:
        raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, f"http_{status}", text[:500]))
    try:
        answer = jsonlib.loads(text)
    except ValueError as err:
        raise ProviderHttpError(
            DeliveryResult(AttemptOutcome.TRANSIENT, "bad_response", f"HTTP {status}: {text[:500]}")
        ) from err
    if not isinstance(answer, dict):
        # Every provider here answers a JSON object; anything else (a list, a bare string) is
        # a proxy's or a fault's, and must not reach code that reads fields.
        raise ProviderHttpError(
            DeliveryResult(AttemptOutcome.TRANSIENT, "bad_response", f"HTTP {status}: {text[:500]}")
        )
    return answer


def observe(request: HttpRequest, started: float, result: str) -> None:
    """The call's latency in nc_provider_request_seconds (/metrics)."""
    PROVIDER_SECONDS.labels(request.channel, request.provider, result).observe(time.perf_counter() - started)


def call_blocking(request: HttpRequest) -> dict:
    """One call with this process's urllib3 pool: the JSON object answered, or ProviderHttpError
    (transient when the request surely did not reach the provider, unknown when it may have been
    acted on: read timeout, connection lost after the request left)."""
    started = time.perf_counter()
    try:
        response = http().request(
            request.method, request.url, body=request.body, headers=request.headers, timeout=timeout()
        )
    except urllib3.exceptions.NewConnectionError as err:  # a subclass of the timeout error, but refused
        result = DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))
    except urllib3.exceptions.ConnectTimeoutError as err:  # never connected: nothing left
        result = DeliveryResult(AttemptOutcome.TRANSIENT, "connect_timeout", repr(err))
    except urllib3.exceptions.ReadTimeoutError as err:
        # The request left; the provider may act on it after we stopped waiting.
        result = DeliveryResult(AttemptOutcome.UNKNOWN, "timeout", repr(err))
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as err:
        # The connection broke with the request sent or half sent: the outcome is unknown.
        result = DeliveryResult(AttemptOutcome.UNKNOWN, "connection_lost", repr(err))
    except urllib3.exceptions.HTTPError as err:
        result = DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))
    else:
        observe(request, started, f"http_{response.status // 100}xx")
        return parse_answer(response.status, response.data)
    observe(request, started, result.code)
    raise ProviderHttpError(result)


def drive(steps: Steps, call=call_blocking):
    """Run a backend's steps to their end, one blocking call at a time; returns their value."""
    try:
        request = next(steps)
        while True:
            try:
                answer = call(request)
            except ProviderHttpError as err:
                request = steps.throw(err)
            else:
                request = steps.send(answer)
    except StopIteration as stop:
        return stop.value


class HttpBackend(Backend):
    public_base_url = ""
    sandbox_prefix = ""  # where this provider lives on the fake provider server

    def base_url(self, account: ChannelAccount) -> str:
        if account.sandbox:
            return settings.FAKE_PROVIDERS_URL.rstrip("/") + self.sandbox_prefix
        return (account.base_url or self.public_base_url).rstrip("/")

    def call(self, method: str, url: str, **kwargs) -> HttpRequest:
        """A request of this backend, to be yielded by its steps (build_request's arguments)."""
        request = build_request(method, url, **kwargs)
        return HttpRequest(request.method, request.url, request.body, request.headers, self.channel, self.provider)

    def request(self, method: str, url: str, **kwargs) -> dict:
        """One blocking call (queries, checks, token fetches): the JSON object answered, or
        ProviderHttpError with its result."""
        return call_blocking(self.call(method, url, **kwargs))

    def send(self, delivery) -> DeliveryResult:
        return drive(self.send_steps(delivery))

    def send_steps(self, delivery) -> Steps:
        raise NotImplementedError

    def prepare_steps(self, delivery) -> Steps:
        yield from ()
        return None

    def prepare(self, delivery) -> DeliveryResult | None:
        return drive(self.prepare_steps(delivery))
