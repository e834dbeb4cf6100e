"""Every admin page an operations user can open renders, with data from a real event in it."""

import pytest
from django.contrib import admin
from django.urls import reverse

from channels.models import Delivery
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_changelist_and_change_page_renders(catalog, backend, admin_client):
    payload = paid_event(consultation_type="video")
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": "13812345678"}]
    assert backend.post("/api/v1/events", payload, format="json").status_code == 202

    for model, _ in admin.site._registry.items():
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = admin_client.get(changelist)
        assert response.status_code == 200, changelist
        first = model.objects.first()
        if first is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            assert admin_client.get(change).status_code == 200, change


def test_skipped_deliveries_show_their_reason_and_phones_are_masked(catalog, backend, admin_client, monkeypatch):
    from channels import providers

    monkeypatch.delitem(providers.BACKENDS, "sms")  # as for a channel whose backend is not written yet
    payload = paid_event(consultation_type="text")
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": "13812345678"}]
    backend.post("/api/v1/events", payload, format="json")

    page = admin_client.get(reverse("admin:channels_delivery_changelist") + "?status=skipped").content.decode()
    assert "channel_not_implemented" in page
    assert "no_address" in page

    sms = Delivery.objects.get(channel="sms")
    detail = admin_client.get(reverse("admin:channels_delivery_change", args=[sms.pk])).content.decode()
    assert "138****5678" in detail
    assert "13812345678" not in detail
    recipients = admin_client.get(reverse("admin:channels_recipient_changelist")).content.decode()
    assert "138****5678" in recipients and "13812345678" not in recipients


def test_the_broadcast_list_does_not_query_once_per_row(catalog, admin_client, django_assert_max_num_queries):
    from django_celery_beat.models import CrontabSchedule

    from scenarios.broadcasts import broadcast_schedule_sync
    from scenarios.models import RecurringBroadcast, Scenario

    crontab = CrontabSchedule.objects.create(minute="0", hour="9", day_of_week="1", timezone="Asia/Shanghai")
    scenario = Scenario.objects.get(code="point.changed")
    for i in range(15):
        broadcast = RecurringBroadcast.objects.create(
            name=f"群发{i}", scenario=scenario, crontab=crontab, recipients={"doctor": ["d-1"]}
        )
        broadcast_schedule_sync(broadcast=broadcast)

    # Fifteen rows: a query per row for each broadcast's periodic task would pass this bound. (13:
    # the session's expiry renewed at each console request, SESSION_SAVE_EVERY_REQUEST.)
    with django_assert_max_num_queries(13):
        assert admin_client.get(reverse("admin:scenarios_recurringbroadcast_changelist")).status_code == 200


def test_permissions_are_named_in_the_console_s_language(admin_client):
    page = admin_client.get(reverse("admin:auth_group_add")).content.decode()
    assert "Can add log entry" not in page and "Can view delivery" not in page  # as Django keeps them
    assert "渠道与投递 | 投递 | 可以查看投递" in page
    assert "渠道与投递 | 投递 | 可以重试投递" in page  # our own permission, through the catalog


def test_a_delivery_s_page_says_its_reason_and_timeline_in_chinese_and_local_time(admin_client):
    from datetime import UTC, datetime

    from channels.models import ChangeSource, DeliveryStatusChange
    from channels.services import POLICY_WORDS

    at = datetime(2026, 11, 30, 18, 23, 4, tzinfo=UTC)  # 02:23:04 the next day in Shanghai
    held = Delivery.objects.create(
        channel="wechat_oa_template",
        idempotency_key="held-1",
        status="deferred",
        not_before=at,
        last_error_code="quiet_hours",
        last_error_message=POLICY_WORDS["quiet_hours"],
    )
    DeliveryStatusChange.objects.create(delivery=held, status="deferred", at=at, source=ChangeSource.CREATE)

    page = admin_client.get(reverse("admin:channels_delivery_change", args=[held.pk])).content.decode()
    assert "免打扰时段 (quiet_hours)" in page and "免打扰时段：暂缓到时段结束后发送" in page
    assert "Quiet hours: held" not in page
    assert "暂缓 @ 2026-12-01 02:23:04" in page  # the timeline row's heading, not "deferred @ … 18:23:04"
    assert "微信服务号模板消息 #" in page  # the breadcrumb names the channel as staff do
