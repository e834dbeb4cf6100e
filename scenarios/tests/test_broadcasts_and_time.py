import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from inbox.models import InboxMessage
from scenarios.broadcasts import broadcast_delete, broadcast_schedule_sync, broadcast_send
from scenarios.models import ChannelBinding, Message, RecurringBroadcast, Rule, Scenario, Template
from scenarios.planning import timing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def questionnaire(db):
    scenario = Scenario.objects.create(code="questionnaire.weekly", name="每周问卷提醒", domain="questionnaire")
    template = Template.objects.create(
        code="pt_questionnaire_0000001",
        name="问卷提醒",
        audience="patient",
        category="system",
        title="请填写本周健康问卷",
        body="您好，本周的健康问卷已开放，请抽空填写。",
    )
    ChannelBinding.objects.create(template=template, channel="inbox")
    Rule.objects.create(scenario=scenario, code="patients", audience="patient", template=template)
    return scenario


def test_a_recurring_broadcast_is_one_periodic_task_on_its_crontab(questionnaire):
    monday_9 = CrontabSchedule.objects.create(minute="0", hour="9", day_of_week="1", timezone="Asia/Shanghai")
    broadcast = RecurringBroadcast.objects.create(
        name="每周一问卷", scenario=questionnaire, recipients={"patient": ["p-1", "p-2"]}, crontab=monday_9
    )

    task = broadcast_schedule_sync(broadcast=broadcast)
    assert (task.task, json.loads(task.args), task.crontab, task.enabled) == (
        "scenarios.tasks.send_broadcast",
        [broadcast.pk],
        monday_9,
        True,
    )
    broadcast.enabled = False
    broadcast_schedule_sync(broadcast=broadcast)
    assert PeriodicTask.objects.get(pk=task.pk).enabled is False
    assert PeriodicTask.objects.filter(name__startswith="broadcast:").count() == 1

    broadcast_delete(broadcast=broadcast)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_each_firing_sends_once_even_if_beat_fires_twice_in_a_minute(questionnaire):
    monday_9 = CrontabSchedule.objects.create(minute="0", hour="9", day_of_week="1", timezone="Asia/Shanghai")
    broadcast = RecurringBroadcast.objects.create(
        name="每周一问卷", scenario=questionnaire, recipients={"patient": ["p-1", "p-2"]}, crontab=monday_9
    )
    at_9 = datetime(2026, 11, 30, 9, 0, 5, tzinfo=ZoneInfo("Asia/Shanghai"))

    broadcast_send(broadcast_id=broadcast.pk, now=at_9)
    broadcast_send(broadcast_id=broadcast.pk, now=at_9 + timedelta(seconds=20))
    broadcast_send(broadcast_id=broadcast.pk, now=at_9 + timedelta(days=7))

    assert InboxMessage.objects.filter(recipient_id="p-1").count() == 2


def test_reminder_times_are_exact_across_a_dst_change(settings):
    """Aware arithmetic: in New York, an hour before 03:30 EDT on the night clocks go forward is
    01:30 EST (one real hour earlier), not 02:30 (a wall-clock time that does not exist)."""
    settings.TIME_ZONE = "America/New_York"
    rule = Rule(code="r", anchor_field="t", offset_minutes=-60, grace_minutes=0)
    anchor = datetime(2030, 3, 10, 7, 30, tzinfo=ZoneInfo("UTC"))  # 03:30 EDT, just after the jump
    due_at, send_now, skipped = timing(rule, anchor, now=anchor - timedelta(hours=2))

    assert due_at == datetime(2030, 3, 10, 6, 30, tzinfo=ZoneInfo("UTC"))
    assert due_at.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M %Z") == "01:30 EST"
    assert (send_now, skipped) == (False, "")


def test_operations_see_upcoming_reminders_and_cancel_them_with_permission(catalog, backend, admin_client):
    backend.post(
        "/api/v1/events",
        {
            "event": "inquiry.appointment_booked",
            "idempotency_key": "b1",
            "data": {
                "inquiry_id": "9001",
                "order_no": "IQ1",
                "consultation_type": "video",
                "patient_name": "张三",
                "appointment_time": "2030-03-01T10:00:00+08:00",
            },
            "recipients": {"doctor": ["d-17"]},
        },
        format="json",
    )
    url = reverse("admin:scenarios_upcomingreminder_changelist")
    page = admin_client.get(url + "?q=9001").content.decode()
    assert "dc_inquiry_0000004" in page and "dc_inquiry_0000006" in page

    ids = list(Message.objects.values_list("pk", flat=True))
    response = admin_client.post(url, {"action": "cancel_reminders", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    assert set(Message.objects.values_list("status", flat=True)) == {"cancelled"}
    assert "9001" not in admin_client.get(url).content.decode()
