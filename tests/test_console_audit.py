"""Who did what in the console is kept with what they did it to: a retry or cancel of deliveries
names the operator in each delivery's timeline; revoking an API key, replaying webhook
deliveries and cancelling a broadcast are in those objects' history (Django's admin log, shown in
the reader's language), as a form save is."""

import re
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from channels.models import ChangeSource, Delivery, DeliveryStatus
from notifycenter.models import ApiKey, WebhookDelivery, WebhookEndpoint
from scenarios.fanout import broadcast_create
from scenarios.models import Broadcast
from scenarios.tests.test_fanout_broadcasts import make_template

pytestmark = pytest.mark.django_db


def test_a_retry_and_a_cancel_name_the_operator_in_the_timeline(catalog, admin_client):
    user = User.objects.get(username="admin")
    failed = Delivery.objects.create(
        channel="inbox", idempotency_key="f", template_code="x", status=DeliveryStatus.FAILED, not_before=timezone.now()
    )
    later = Delivery.objects.create(
        channel="inbox", idempotency_key="l", template_code="x", not_before=timezone.now() + timedelta(days=1)
    )
    changelist = reverse("admin:channels_delivery_changelist")

    admin_client.post(changelist, {"action": "retry_now", "_selected_action": [failed.pk]})
    admin_client.post(changelist, {"action": "cancel", "_selected_action": [later.pk]})

    retried = failed.status_changes.get(source=ChangeSource.OPERATOR)
    cancelled = later.status_changes.get(source=ChangeSource.OPERATOR)
    assert (retried.code, retried.detail) == ("retry", user.username)
    assert (cancelled.code, cancelled.detail) == ("cancelled_by_operator", user.username)
    page = admin_client.get(reverse("admin:channels_delivery_change", args=[later.pk])).content.decode()
    assert re.search(r"运营人员.*?cancelled_by_operator.*?>admin<", page, re.S)  # source, code, who


def test_revoking_an_api_key_is_in_its_history(db, admin_client):
    key, _ = ApiKey.generate(client="his", name="HIS", scopes=["events"])
    changelist = reverse("admin:notifycenter_apikey_changelist")

    admin_client.post(changelist, {"action": "revoke", "_selected_action": [key.pk]})

    key.refresh_from_db()
    assert not key.is_active
    entry = LogEntry.objects.get(object_id=str(key.pk), content_type__model="apikey")
    assert (entry.user.username, entry.action_flag) == ("admin", CHANGE)
    history = admin_client.get(reverse("admin:notifycenter_apikey_history", args=[key.pk])).content.decode()
    assert "admin" in history and "已修改" in history
    # revoking it again records nothing: it was no longer active
    admin_client.post(changelist, {"action": "revoke", "_selected_action": [key.pk]})
    assert LogEntry.objects.filter(content_type__model="apikey").count() == 1


def test_replaying_webhook_deliveries_is_in_their_history(db, admin_client):
    endpoint = WebhookEndpoint.objects.create(
        client="his", url="https://his.example.cn/hook", signing={"secret": "s"}, events=[]
    )
    row = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id="e1",
        event="delivery.failed",
        subject="d:1",
        payload={},
        status="dead",
        next_try_at=timezone.now(),
    )

    with patch("notifycenter.admin.send_soon"):  # the sender is not what is tested here
        admin_client.post(
            reverse("admin:notifycenter_webhookdelivery_changelist"), {"action": "replay", "_selected_action": [row.pk]}
        )

    assert LogEntry.objects.filter(object_id=str(row.pk), content_type__model="webhookdelivery").exists()


def test_cancelling_a_broadcast_is_in_its_history(db, admin_client):
    template = make_template()
    with patch("scenarios.fanout.broadcast_enqueue"):  # left queued: no worker here
        broadcast, _ = broadcast_create(
            name="冬季义诊",
            template=template,
            channels=["inbox"],
            data={"day": "1"},
            external_ids=["p-1", "p-2"],
            created_by="admin",
        )

    admin_client.post(
        reverse("admin:scenarios_broadcast_changelist"),
        {"action": "cancel_broadcasts", "_selected_action": [broadcast.pk]},
    )

    assert Broadcast.objects.get(pk=broadcast.pk).status == "cancelled"
    entry = LogEntry.objects.get(object_id=str(broadcast.pk), content_type__model="broadcast")
    assert entry.user.username == "admin"


def test_a_login_made_in_the_console_can_sign_in_and_groups_are_named_in_chinese(db, admin_client):
    from django.contrib.auth.models import Group, Permission

    from notifycenter.groups import groups_sync

    groups_sync(Group, Permission)
    answer = admin_client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "yunying01",
            "password1": "a-long-pass-2026!",
            "password2": "a-long-pass-2026!",
            "usable_password": "true",
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    assert User.objects.get(username="yunying01").is_staff
    page = admin_client.get(reverse("admin:auth_user_change", args=[User.objects.get(username="yunying01").pk]))
    assert "运营编辑 (operations editor)" in page.content.decode()
