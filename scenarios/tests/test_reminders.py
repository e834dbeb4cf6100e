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


def change(backend, new_time, key="change-9001"):
    return backend.post(
        "/api/v1/events",
        {
            "event": "inquiry.appointment_changed",
            "idempotency_key": key,
            "data": {"inquiry_id": "9001", "appointment_time": new_time.isoformat()},
        },
        format="json",
    )


def test_a_changed_appointment_moves_both_reminders_in_place(catalog, backend):
    book(backend)
    answer = change(backend, BOOKED_FOR + timedelta(hours=1)).json()

    assert answer["rescheduled_reminders"] == 2
    assert Message.objects.count() == 2  # moved, never duplicated
    assert messages_fire_due(now=BOOKED_FOR - timedelta(minutes=5)) == 0  # the old time passes quietly
    assert messages_fire_due(now=BOOKED_FOR + timedelta(minutes=55)) == 1
    body = InboxMessage.objects.get(template_code="dc_inquiry_0000004").body
    assert "2030-03-01 11:00" in body  # rendered with the new time
    assert messages_fire_due(now=BOOKED_FOR + timedelta(minutes=70)) == 1
    assert doctor_inbox_titles() == ["预约问诊5分钟后开始", "视频问诊尚未发起"]


def at(monkeypatch, moment):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: moment)


def test_a_booking_that_arrives_late_sends_within_grace_and_skips_beyond_it(catalog, backend, monkeypatch):
    at(monkeypatch, BOOKED_FOR - timedelta(minutes=2))  # 09:58: the 09:55 reminder is 3 min late, grace 5
    answer = book(backend).json()

    by_template = {m["template"]: m for m in answer["messages"]}
    assert by_template["dc_inquiry_0000004"]["status"] == "dispatched"
    assert by_template["dc_inquiry_0000006"]["status"] == "scheduled"
    assert doctor_inbox_titles() == ["预约问诊5分钟后开始"]


def test_a_booking_far_too_late_is_skipped_as_too_late(catalog, backend, monkeypatch):
    at(monkeypatch, BOOKED_FOR + timedelta(minutes=30))  # 10:30: both reminders are past their grace
    answer = book(backend).json()

    assert {m["status"] for m in answer["messages"]} == {"skipped"}
    assert set(Message.objects.values_list("status_reason", flat=True)) == {"too_late"}
    assert doctor_inbox_titles() == []


def test_two_scanners_at_once_fire_each_reminder_exactly_once(catalog, backend):
    import threading

    from django.db import connection

    from channels.models import Delivery

    for i in range(60):
        backend.post(
            "/api/v1/events",
            {
                "event": "inquiry.appointment_booked",
                "idempotency_key": f"b-{i}",
                "data": {
                    "inquiry_id": f"c-{i}",
                    "order_no": f"IQ{i}",
                    "consultation_type": "phone",
                    "patient_name": "张三",
                    "appointment_time": BOOKED_FOR.isoformat(),
                },
                "recipients": {"doctor": ["d-17"]},
            },
            format="json",
        )
    fired = []
    errors = []

    def scan():
        try:
            while n := messages_fire_due(now=BOOKED_FOR, limit=7):
                fired.append(n)
        except Exception as err:  # an IntegrityError here would mean a double fire
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=scan) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sum(fired) == 60
    assert Message.objects.filter(status="dispatched").count() == 60
    # One inbox and one push delivery per reminder, none twice.
    assert Delivery.objects.filter(channel="inbox").count() == 60
