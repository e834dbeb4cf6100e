import pytest
from django.utils import timezone

from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from channels.ratelimit import take
from channels.sending import delivery_send
from channels.services import DeliveryRequest, deliveries_create
from tests.clients import backend_client
from tests.factories import paid_event

pytestmark = pytest.mark.django_db


def test_a_bucket_grants_its_burst_then_says_how_long_to_wait():
    assert [take("t1", per_minute=60, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = take("t1", per_minute=60, burst=3)
    assert 0.5 < wait <= 1.0
    assert take("t2", per_minute=60, burst=3) == 0.0  # buckets are separate


def test_over_the_accounts_limit_a_delivery_waits_and_is_never_dropped():
    account = ChannelAccount.objects.create(
        name="inbox-limited", channel="inbox", provider="builtin", rate_limit_per_minute=2
    )
    person = Recipient.objects.create(audience="patient", external_id="p-1")
    rows = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="inbox",
                recipient=person,
                content={"title": f"t{i}", "body": "b"},
                idempotency_key=f"rl-{i}",
                account=account,
            )
            for i in range(3)
        ]
    )
    for row in rows:
        delivery_send(delivery_id=row.pk)

    statuses = [Delivery.objects.get(pk=r.pk) for r in rows]
    assert [d.status for d in statuses] == [DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.QUEUED]
    waiting = statuses[2]
    assert 20 < (waiting.not_before - timezone.now()).total_seconds() <= 30
    assert waiting.attempt_count == 0 and waiting.enqueued_at is None


def test_an_api_key_over_its_rate_gets_429_with_retry_after(catalog):
    client = backend_client()
    from notifycenter.models import ApiKey

    ApiKey.objects.update(rate_limit_per_minute=2)
    codes = [client.get("/api/v1/events/1").status_code for _ in range(3)]

    assert codes[:2] == [404, 404]
    response = client.get("/api/v1/events/1")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert paid_event  # the same client is still known; only its rate is capped
