"""A delivery's timeline in the console says what the status webhooks made of each row: a time
only for rows that really went out to them."""

import pytest
from django.urls import reverse

from channels.models import ChangeSource, Delivery, DeliveryStatus, DeliveryStatusChange
from channels.timeline import delivery_progress
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_timeline_tells_published_rows_from_rows_no_webhook_is_for(catalog, backend, admin_client):
    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    inbox = Delivery.objects.filter(channel="inbox").first()
    # Created queued: a quiet row, born published. Then read (news) and a late `delivered` after it.
    assert delivery_progress(delivery_id=inbox.pk, status=DeliveryStatus.READ, at=None, source="inbox") == "applied"
    assert delivery_progress(delivery_id=inbox.pk, status=DeliveryStatus.DELIVERED, at=None, source="inbox") == "late"
    rows = {c.status: c for c in DeliveryStatusChange.objects.filter(delivery_id=inbox.pk)}
    assert rows[DeliveryStatus.QUEUED].source == ChangeSource.CREATE
    assert rows[DeliveryStatus.QUEUED].published_at is not None  # what the column used to show as a time
    assert rows[DeliveryStatus.READ].published_at is None and not rows[DeliveryStatus.DELIVERED].applied

    page = admin_client.get(reverse("admin:channels_delivery_change", args=[inbox.pk])).content.decode()
    assert "状态回调" in page  # the column, in the console's language
    assert page.count("无：途中状态，不是结果") == 1  # the creation row
    assert page.count("无：迟到的回执，未生效") == 1  # the late `delivered`
    assert page.count("等待发布") == 2  # `sent` and `read`: news, not yet handed to the publisher

    DeliveryStatusChange.objects.filter(delivery_id=inbox.pk, published_at__isnull=True).update(
        published_at="2026-11-30T02:03:04Z"
    )
    page = admin_client.get(reverse("admin:channels_delivery_change", args=[inbox.pk])).content.decode()
    assert "等待发布" not in page
    assert "10:03" in page  # its time, in Asia/Shanghai
