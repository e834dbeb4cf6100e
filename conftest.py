"""Fixtures shared by every app's tests: the catalog, an API client with a key, inbox tokens."""

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


@pytest.fixture(autouse=True)
def fresh_catalog_cache():
    """Each test's database has its own catalog rows; forget what an earlier test loaded."""
    from scenarios import catalog

    catalog._loaded.clear()
    yield
    catalog._loaded.clear()
