"""Follow-up plans: enrol, materialize 48 hours ahead, fire, stop; wall-clock times across DST."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from inbox.models import InboxMessage
from scenarios.models import Message, PlanEnrollment, PlanStep
from scenarios.plans import occurrences, plans_materialize_due
from scenarios.services import messages_fire_due

pytestmark = pytest.mark.django_db(transaction=True)
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=SH)  # a Wednesday


def at(monkeypatch, moment):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: moment)


def enrol(backend, key="FU-9001", start="2026-11-26", **extra):
    body = {
        "event": "plan.enrolled",
        "idempotency_key": f"enrol-{key}",
        "data": {"plan": "post_consultation", "enrollment_id": key, "start_date": start},
        "recipients": {"patient": ["p-42"]},
    }
    body.update(extra)
    return backend.post("/api/v1/events", body, format="json")


def due_times():
    return sorted(m.due_at.astimezone(SH).strftime("%m-%d %H:%M") for m in Message.objects.filter(status="scheduled"))


def test_enrolling_materializes_only_the_next_48_hours(catalog, backend, monkeypatch):
    at(monkeypatch, NOW)
    answer = enrol(backend).json()

    assert answer["plan"]["scheduled_reminders"] == 1
    assert due_times() == ["11-27 09:00"]  # day 1; the first Monday (11-30) is beyond the horizon

    plans_materialize_due(now=NOW + timedelta(days=4))  # Sunday 11-29 10:00: Monday is within 48 h
    plans_materialize_due(now=NOW + timedelta(days=4))  # again: nothing twice
    assert due_times() == ["11-27 09:00", "11-30 09:00"]


def test_plan_reminders_fire_and_the_plan_completes(catalog, backend, monkeypatch):
    at(monkeypatch, NOW)
    enrol(backend)
    for day in range(0, 40, 1):
        plans_materialize_due(now=NOW + timedelta(days=day))
    messages_fire_due(now=NOW + timedelta(days=40))

    titles = list(InboxMessage.objects.filter(recipient_id="p-42").values_list("title", flat=True))
    assert titles.count("随访提醒") == 1 and titles.count("每周随访") == 4
    assert PlanEnrollment.objects.get().status == "completed"


def test_stopping_a_plan_cancels_what_is_pending(catalog, backend, monkeypatch):
    at(monkeypatch, NOW)
    enrol(backend)
    answer = backend.post(
        "/api/v1/events",
        {
            "event": "plan.cancelled",
            "idempotency_key": "stop",
            "data": {"plan": "post_consultation", "enrollment_id": "FU-9001"},
        },
        format="json",
    ).json()

    assert answer["plan"] == {"cancelled_reminders": 1}
    plans_materialize_due(now=NOW + timedelta(days=4))
    assert due_times() == []
    assert PlanEnrollment.objects.get().status == "cancelled"


def test_enrolment_mistakes_are_named_and_change_nothing(catalog, backend):
    response = enrol(backend, start="next week")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_data")
    assert set(response.json()["fields"]) == {"data.start_date"}
    nobody = enrol(backend, recipients={"patient": []})
    assert nobody.json()["fields"] == {"recipients.patient": ["Exactly one patient is enrolled per event."]}

    unknown = backend.post(
        "/api/v1/events",
        {
            "event": "plan.enrolled",
            "idempotency_key": "x",
            "data": {"plan": "nonexistent", "enrollment_id": "e", "start_date": "2026-11-26"},
            "recipients": {"patient": ["p-1"]},
        },
        format="json",
    )
    assert unknown.json()["fields"] == {"data.plan": ["Not the code of an enabled follow-up plan."]}
    assert not PlanEnrollment.objects.exists()


def test_weekly_steps_keep_their_wall_clock_time_across_dst(settings):
    settings.TIME_ZONE = "America/New_York"
    step = PlanStep(rrule="FREQ=WEEKLY;COUNT=2", time_of_day=time(9, 0), day_offset=0)
    utc = ZoneInfo("UTC")
    times = list(
        occurrences(
            step, date(2030, 3, 4), after=datetime(2030, 3, 1, tzinfo=utc), until=datetime(2030, 4, 1, tzinfo=utc)
        )
    )
    assert [t.astimezone(utc).strftime("%m-%d %H:%M") for t in times] == ["03-04 14:00", "03-11 13:00"]
