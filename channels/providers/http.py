"""The shared HTTP part of provider backends (anymail's base_requests): one pooled client per
process, timeouts, the account's base URL (the fake provider server in sandbox), and transport
failures normalized as transient results with their own words.

The client is urllib3, not httpx: on the send path it
cost a third of httpx's CPU per request (0.7 ms against 2.1 ms, 48 threads, measured for
bench/deliver.py), and provider sends are most of a worker's CPU.
"""

import base64
import json as jsonlib
import time
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


class HttpBackend(Backend):
    public_base_url = ""
    sandbox_prefix = ""  # where this provider lives on the fake provider server

    def _observe(self, started: float, result: str) -> None:
        """The call's latency in nc_provider_request_seconds (/metrics)."""
        PROVIDER_SECONDS.labels(self.channel, self.provider, result).observe(time.perf_counter() - started)

    def base_url(self, account: ChannelAccount) -> str:
        if account.sandbox:
            return settings.FAKE_PROVIDERS_URL.rstrip("/") + self.sandbox_prefix
        return (account.base_url or self.public_base_url).rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json=None,
        data: dict | None = None,
        content: bytes | None = None,
        headers: dict | None = None,
        auth: tuple[str, str] | None = None,
    ) -> dict:
        """One call: `params` in the query, a body as `json`, form `data` or raw `content`, HTTP
        basic `auth`. Returns the JSON object answered; raises ProviderHttpError with a result:
        transient when the request surely did not reach the provider or the provider said it
        failed (connection refused, connect timeout, 5xx, an answer that is not a JSON object),
        unknown when it may have been acted on (read timeout, connection lost after the request
        left)."""
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
        started = time.perf_counter()
        try:
            response = self._call(method, url, body, sent_headers)
        except ProviderHttpError as err:
            self._observe(started, err.result.code)
            raise
        self._observe(started, f"http_{response.status // 100}xx")
        text = response.data.decode("utf-8", errors="replace")
        if response.status == 504:  # a gateway gave up waiting: the provider may still act on it
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.UNKNOWN, "http_504", text[:500]))
        if response.status >= 500:
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, f"http_{response.status}", text[:500]))
        try:
            answer = jsonlib.loads(text)
        except ValueError as err:
            raise ProviderHttpError(
                DeliveryResult(AttemptOutcome.TRANSIENT, "bad_response", f"HTTP {response.status}: {text[:500]}")
            ) from err
        if not isinstance(answer, dict):
            # Every provider here answers a JSON object; anything else (a list, a bare string) is
            # a proxy's or a fault's, and must not reach code that reads fields.
            raise ProviderHttpError(
                DeliveryResult(AttemptOutcome.TRANSIENT, "bad_response", f"HTTP {response.status}: {text[:500]}")
            )
        return answer

    def _call(self, method: str, url: str, body, sent_headers: dict):
        """The request itself; transport failures as ProviderHttpError with their outcome."""
        try:
            return http().request(method, url, body=body, headers=sent_headers, timeout=timeout())
        except urllib3.exceptions.NewConnectionError as err:  # a subclass of the timeout error, but refused
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))) from err
        except urllib3.exceptions.ConnectTimeoutError as err:  # never connected: nothing left
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, "connect_timeout", repr(err))) from err
        except urllib3.exceptions.ReadTimeoutError as err:
            # The request left; the provider may act on it after we stopped waiting.
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.UNKNOWN, "timeout", repr(err))) from err
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as err:
            # The connection broke with the request sent or half sent: the outcome is unknown.
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.UNKNOWN, "connection_lost", repr(err))) from err
        except urllib3.exceptions.HTTPError as err:
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))) from err
