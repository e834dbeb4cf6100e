"""Catalog rows 3 and 8: booked 10:00 → reminded 09:55; no video by 10:10 → reminded 10:10;
a video call at 10:02 → no 10:10 reminder."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from inbox.models import InboxMessage
from scenarios.models import Message, MessageStatus
from scenarios.services import messages_fire_due

pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BOOKED_FOR = datetime(2030, 3, 1, 10, 0, tzinfo=SHANGHAI)


def book(backend, consultation_type="video"):
    return backend.post(
        "/api/v1/events",
        {
            "event": "inquiry.appointment_booked",
            "idempotency_key": f"book-9001-{consultation_type}",
            "data": {
                "inquiry_id": "9001",
                "order_no": "IQ1",
                "consultation_type": consultation_type,
                "patient_name": "张三",
                "appointment_time": BOOKED_FOR.isoformat(),
            },
            "recipients": {"doctor": ["d-17"]},
        },
        format="json",
    )


def doctor_inbox_titles():
    return list(InboxMessage.objects.filter(audience="doctor", recipient_id="d-17").values_list("title", flat=True))


def test_booking_schedules_both_reminders_and_they_fire_at_their_time(catalog, backend):
    answer = book(backend).json()

    due = sorted((m["template"], m["due_at"], m["scheduled"]) for m in answer["messages"])
    assert due == [
        ("dc_inquiry_0000004", "2030-03-01T09:55:00+08:00", True),
        ("dc_inquiry_0000006", "2030-03-01T10:10:00+08:00", True),
    ]
    assert messages_fire_due(now=BOOKED_FOR - timedelta(minutes=6)) == 0
    assert doctor_inbox_titles() == []

    assert messages_fire_due(now=BOOKED_FOR - timedelta(minutes=5)) == 1
    assert doctor_inbox_titles() == ["预约问诊5分钟后开始"]
    body = InboxMessage.objects.get(template_code="dc_inquiry_0000004").body
    assert body == "患者张三预约的视频问诊将于2030-03-01 10:00开始，请提前做好准备。"

    assert messages_fire_due(now=BOOKED_FOR + timedelta(minutes=10)) == 1
    assert doctor_inbox_titles() == ["预约问诊5分钟后开始", "视频问诊尚未发起"]
    assert messages_fire_due(now=BOOKED_FOR + timedelta(minutes=11)) == 0  # each fires once


def test_a_video_call_cancels_the_ten_minutes_after_reminder(catalog, backend):
    book(backend)
    messages_fire_due(now=BOOKED_FOR - timedelta(minutes=5))

    response = backend.post(
        "/api/v1/events",
        {
            "event": "inquiry.video_call_started",
            "idempotency_key": "call-9001",
            "data": {"inquiry_id": "9001", "doctor_name": "李明"},
            "recipients": {"patient": ["p-42"]},
        },
        format="json",
    )

    assert response.json()["cancelled_reminders"] == 1
    assert messages_fire_due(now=BOOKED_FOR + timedelta(minutes=10)) == 0
    assert doctor_inbox_titles() == ["预约问诊5分钟后开始"]
    cancelled = Message.objects.get(template__code="dc_inquiry_0000006")
    assert cancelled.status == MessageStatus.CANCELLED
    assert cancelled.status_reason.startswith("cancelled by inquiry.video_call_started")


def test_a_phone_booking_gets_no_video_reminder(catalog, backend):
    answer = book(backend, consultation_type="phone").json()

    assert [m["template"] for m in answer["messages"]] == ["dc_inquiry_0000004"]
    assert answer["skipped_rules"] == [{"rule": "doctor_no_video_10min_after", "reason": "condition_not_met"}]
