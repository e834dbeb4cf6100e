"""The shared HTTP part of provider backends (anymail's base_requests): one httpx client per
process, timeouts, the account's base URL (the fake provider server in sandbox), and transport
failures normalized as transient results with their own words."""

import httpx
from django.conf import settings

from ..models import AttemptOutcome, ChannelAccount
from .base import Backend, DeliveryResult

_client: httpx.Client | None = None


def http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), limits=httpx.Limits(max_connections=50))
    return _client


class ProviderHttpError(Exception):
    """The provider could not be reached, or answered with an HTTP error; carries a result."""

    def __init__(self, result: DeliveryResult):
        super().__init__(result.message)
        self.result = result


class HttpBackend(Backend):
    public_base_url = ""
    sandbox_prefix = ""  # where this provider lives on the fake provider server

    def base_url(self, account: ChannelAccount) -> str:
        if account.sandbox:
            return settings.FAKE_PROVIDERS_URL.rstrip("/") + self.sandbox_prefix
        return (account.base_url or self.public_base_url).rstrip("/")

    def request(self, method: str, url: str, **kwargs) -> dict:
        try:
            response = http().request(method, url, **kwargs)
        except httpx.TimeoutException as err:
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, "timeout", repr(err))) from err
        except httpx.HTTPError as err:
            raise ProviderHttpError(DeliveryResult(AttemptOutcome.TRANSIENT, "connection_error", repr(err))) from err
        if response.status_code >= 500:
            raise ProviderHttpError(
                DeliveryResult(AttemptOutcome.TRANSIENT, f"http_{response.status_code}", response.text[:500])
            )
        try:
            return response.json()
        except ValueError as err:
            raise ProviderHttpError(
                DeliveryResult(AttemptOutcome.TRANSIENT, "bad_response", response.text[:500])
            ) from err
