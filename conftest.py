"""Fixtures shared by every app's tests: the catalog, an API client with a key, inbox tokens."""

import httpx
import pytest
from django.core.management import call_command

from tests.clients import backend_client, inbox_client


@pytest.fixture
def catalog(db):
    call_command("loaddata", "catalog", verbosity=0)


@pytest.fixture
def backend(db):
    """The hospital backend: an API client holding a key with the events scope."""
    return backend_client()


@pytest.fixture
def patient_app(db):
    return inbox_client("patient", "p-42")


@pytest.fixture
def doctor_app(db):
    return inbox_client("doctor", "d-17")


@pytest.fixture(autouse=True)
def clean_redis(settings):
    """Rate-limit buckets and throttle counters in the test Redis database start empty."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("nc:*"):
        client.delete(key)
    for key in client.scan_iter(":1:nc:*"):  # through Django's cache (key prefix ":1:")
        client.delete(key)
    yield


@pytest.fixture(scope="session", autouse=True)
def no_broker_leftovers():
    """The real workers some tests start leave kombu's exchange bindings (`_kombu.binding*`) in
    the test Redis database; a test run leaves nothing behind (issue 13, scripts/check_clean.sh)."""
    yield
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("_kombu.binding*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def fresh_catalog_cache():
    """Each test's database has its own catalog rows and API keys; forget what an earlier test loaded."""
    from notifycenter.auth import api_keys_forget
    from scenarios import catalog, policies

    catalog._loaded.clear()
    policies._settings_cache.clear()
    api_keys_forget()
    yield
    api_keys_forget()
    catalog._loaded.clear()
    policies._settings_cache.clear()


class FakeProviders:
    """The fake provider server as the tests drive it, over HTTP."""

    def __init__(self, url):
        self.url = url

    def calls(self, path_end=""):
        return [c for c in httpx.get(f"{self.url}/_calls").json() if c["path"].endswith(path_end)]

    def script(self, path, responses, latency_ms=0):
        httpx.post(f"{self.url}/_script", json={"path": path, "responses": responses, "latency_ms": latency_ms})

    def expire_tokens(self):
        httpx.post(f"{self.url}/_expire_tokens")

    def signs(self, states: dict[str, int]):
        """Aliyun signatures' review states by name (0 in review, 1 approved, 2 failed, 10 cancelled)."""
        httpx.post(f"{self.url}/_signs", json=states)

    def advance(self, seconds):
        """The fake's clock runs ahead (token lives, rate and de-duplication windows)."""
        httpx.post(f"{self.url}/_advance", json={"seconds": seconds})

    def delivered(self, channel=""):
        """What reached a person on a channel: repeats the provider de-duplicated are not in it."""
        return [d for d in httpx.get(f"{self.url}/_delivered").json() if d["channel"].startswith(channel)]


@pytest.fixture
def fake_providers(settings):
    """`manage.py fakeproviders` on a free port, with sandbox accounts sending to it."""
    from channels.fakeproviders import serve

    server = serve(port=0)
    settings.FAKE_PROVIDERS_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield FakeProviders(settings.FAKE_PROVIDERS_URL)
    server.shutdown()
