"""The console's end-state pages: receipts, webhook endpoints and deliveries (replay), a
delivery's timeline, a scenario's funnel, delivered and read rates on the coverage page."""

import pytest
from django.urls import reverse

from channels.models import Delivery, DeliveryStatus, ProviderReceipt, ReceiptOutcome
from channels.timeline import delivery_progress
from notifycenter.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from scenarios.models import Scenario
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_end_state_pages(catalog, backend, admin_client):
    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    inbox = Delivery.objects.filter(channel="inbox").first()
    assert delivery_progress(delivery_id=inbox.pk, status=DeliveryStatus.READ, at=None, source="inbox") == "applied"
    ProviderReceipt.objects.create(
        provider="aliyun",
        outcome=ReceiptOutcome.UNMATCHED,
        status="delivered",
        our_key="nobody",
        raw={"phone_number": "13812345678"},
    )

    add = admin_client.post(
        reverse("admin:notifycenter_webhookendpoint_add"),
        {"client": "his", "url": "http://127.0.0.1:9/hooks", "events": ["delivery.read"], "is_active": "on"},
    )
    assert add.status_code == 200 and "errorlist" in add.content.decode()  # no secret: refused
    add = admin_client.post(
        reverse("admin:notifycenter_webhookendpoint_add"),
        {
            "client": "his",
            "url": "http://127.0.0.1:9/hooks",
            "secret": "s" * 20,
            "events": ["delivery.read"],
            "is_active": "on",
        },
    )
    assert add.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == "s" * 20
    row = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id="evt_1",
        event="delivery.read",
        subject="d:1",
        payload={},
        status=WebhookStatus.FAILED,
        next_try_at="2026-01-01T00:00:00Z",
        answers=[{"status": 0, "body": "ConnectionRefused"}],
    )

    receipts = admin_client.get(reverse("admin:channels_providerreceipt_changelist")).content.decode()
    assert "nobody" in receipts
    detail = admin_client.get(reverse("admin:channels_providerreceipt_change", args=[ProviderReceipt.objects.get().pk]))
    assert "138****5678" in detail.content.decode() and "13812345678" not in detail.content.decode()
    timeline = admin_client.get(reverse("admin:channels_delivery_change", args=[inbox.pk])).content.decode()
    assert "时间线" in timeline
    listed = admin_client.get(reverse("admin:channels_delivery_changelist") + "?status=read").content.decode()
    assert f"/{inbox.pk}/change/" in listed
    hooks = admin_client.get(reverse("admin:notifycenter_webhookdelivery_changelist")).content.decode()
    assert "ConnectionRefused" in hooks
    replay = admin_client.post(
        reverse("admin:notifycenter_webhookdelivery_changelist"), {"action": "replay", "_selected_action": [row.pk]}
    )
    assert replay.status_code == 302
    row.refresh_from_db()
    assert row.status == WebhookStatus.PENDING and row.attempts == 1  # tried again at once; nothing listens

    event_page = admin_client.get(reverse("admin:scenarios_event_change", args=[inbox.event_ref])).content.decode()
    assert "站内信已读" in event_page  # the read, on the event's timeline

    scenario = Scenario.objects.get(code="inquiry.paid")
    page = admin_client.get(reverse("admin:scenarios_scenario_change", args=[scenario.pk])).content.decode()
    assert "漏斗" in page and "最近 7 天" in page
    coverage = admin_client.get(reverse("admin:scenarios_scenario_coverage")).content.decode()
    assert "送达率" in coverage and "阅读率" in coverage
