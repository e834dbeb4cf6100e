"""Tracked links: /r/<token> records `clicked` once per delivery and forwards only to the
delivery's own catalog link; the OA template message carries the tracked URL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from channels.clicks import click_token, tracked_url
from channels.models import Delivery, DeliveryStatus, Recipient
from channels.services import DeliveryRequest, deliveries_create

pytestmark = pytest.mark.django_db(transaction=True)
H5 = "https://m.hospital.example/im?inquiryId=9001"


def delivery(link: dict) -> Delivery:
    person = Recipient.objects.create(audience="patient", external_id="p-42", wechat_oa_openid="oOA-1")
    (row,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="wechat_oa_template",
                recipient=person,
                idempotency_key="k-click",
                not_before=timezone.now() + timedelta(hours=1),
                content={"title": "t", "body": "b", "link": link},
            )
        ]
    )
    Delivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.DELIVERED, finished_at=timezone.now())
    return row


def test_a_click_is_recorded_once_and_forwarded(settings, client, catalog):
    settings.CLICK_BASE_URL = "https://notify.hospital.example"
    d = delivery({"target": "im_patient", "h5": H5})
    url = tracked_url(d, "h5", H5)
    assert url.startswith("https://notify.hospital.example/r/") and len(url) < 90
    path = url.removeprefix("https://notify.hospital.example")
    for _ in range(2):
        answer = client.get(path)
        assert answer.status_code == 302 and answer["Location"] == H5
    d.refresh_from_db()
    assert d.status == DeliveryStatus.CLICKED
    assert d.status_changes.filter(status="clicked").count() == 1


def test_no_open_redirect(client, catalog):
    d = delivery({"target": "not-in-the-catalog", "h5": "https://evil.example/"})
    assert client.get(f"/r/{click_token(d.pk, 'h5')}").status_code == 404
    assert client.get(f"/r/{d.pk}.h.forged-signature").status_code == 404
    assert client.get("/r/https%3A%2F%2Fevil.example").status_code == 404
    assert client.get(f"/r/{click_token(d.pk + 1000, 'h5')}").status_code == 404


def test_without_a_public_address_links_go_out_as_they_are(settings, catalog):
    settings.CLICK_BASE_URL = ""
    d = delivery({"target": "im_patient", "h5": H5})
    assert tracked_url(d, "h5", H5) == H5
