"""Over real HTTP against a live server on PostgreSQL: concurrent requests race as they would."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from notifycenter.models import ApiKey
from scenarios.models import Event, Message
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_key(db):
    return ApiKey.generate(client="his", name="race", scopes=["events"])[1]


def post_many(url, key, payloads, workers=50):
    def post(payload):
        # The test server's listen backlog is small: a refused or reset connection is retried with
        # the same idempotency key, as a real backend would.
        for attempt in range(10):
            try:
                with httpx.Client(timeout=30) as client:
                    r = client.post(f"{url}/api/v1/events", json=payload, headers={"Authorization": f"Api-Key {key}"})
                    return r.status_code, r.json()
            except httpx.TransportError:
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("the server never answered")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(post, payloads))


def test_fifty_concurrent_identical_requests_make_exactly_one_event(catalog, live_server, api_key):
    payload = paid_event(key="race-1")

    answers = post_many(live_server.url, api_key, [payload] * 50)

    statuses = sorted(status for status, _ in answers)
    assert statuses.count(202) == 1, statuses
    assert statuses.count(200) == 49, statuses
    assert len({body["event_id"] for _, body in answers}) == 1
    assert Event.objects.count() == 1
    assert Message.objects.count() == 3


def test_concurrent_events_naming_the_same_new_person_all_succeed(catalog, live_server, api_key):
    payloads = [paid_event(key=f"new-person-{i}") for i in range(20)]
    for p in payloads:
        p["recipients"] = {"patient": ["p-new"], "doctor": [f"d-{p['idempotency_key']}"]}

    answers = post_many(live_server.url, api_key, payloads, workers=20)

    assert [status for status, _ in answers] == [202] * 20
    assert Event.objects.count() == 20
