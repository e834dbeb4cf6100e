"""A reviewer's walk through broadcasts: recurring broadcasts that could never send are refused at
save and shown in the list, a run refused is logged by name, verification-code templates and
scenarios are never broadcast, the counts say what they count, and the API names every field."""

import json
import logging

import pytest
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from scenarios import fanout
from scenarios.broadcasts import broadcast_send
from scenarios.models import Broadcast, RecurringBroadcast, Scenario, Template

pytestmark = pytest.mark.django_db

MEMBERSHIP = {
    "membership_id": "M1",
    "plan_name": "年度健康会员",
    "patient_name": "张三",
    "expires_at": "2030-11-25T00:00:00+08:00",
}


@pytest.fixture
def daily_9(db):
    return CrontabSchedule.objects.create(minute="0", hour="9", timezone="Asia/Shanghai")


@pytest.fixture
def manual(monkeypatch):
    """Broadcasts are not started on commit."""
    monkeypatch.setattr(fanout, "broadcast_enqueue", lambda **kwargs: None)


def recurring_form(scenario: Scenario, crontab: CrontabSchedule, **change) -> dict:
    form = {
        "name": "每日会员提醒",
        "scenario": scenario.pk,
        "data": json.dumps(MEMBERSHIP),
        "recipients": json.dumps({"patient": ["p-1"]}),
        "crontab": crontab.pk,
        "enabled": "on",
    }
    return {**form, **change}


def form_errors(page) -> dict:
    return {name: [str(e) for e in errors] for name, errors in page.context["adminform"].form.errors.items()}


# 1. Recurring broadcasts


def test_a_recurring_broadcast_whose_data_the_schema_refuses_is_refused_at_save(catalog, admin_client, daily_9):
    membership = Scenario.objects.get(code="membership.activated")
    add = reverse("admin:scenarios_recurringbroadcast_add")

    page = admin_client.post(add, recurring_form(membership, daily_9, data="{}"))
    assert page.status_code == 200
    errors = form_errors(page)
    assert set(errors) == {"data"}
    assert any("data.membership_id" in e for e in errors["data"])
    assert not RecurringBroadcast.objects.exists()

    page = admin_client.post(add, recurring_form(membership, daily_9, recipients=json.dumps({"doctor": ["d-1"]})))
    assert "recipients" in form_errors(page)  # the rules write to patients
    assert not RecurringBroadcast.objects.exists()

    # Ids only: inline addresses would reach every run without the API's address checks.
    inline = json.dumps({"patient": [{"id": "p-1", "phone": "not a phone"}]})
    page = admin_client.post(add, recurring_form(membership, daily_9, recipients=inline))
    assert any("recipients.patient.0" in e for e in form_errors(page)["recipients"])
    assert not RecurringBroadcast.objects.exists()

    assert admin_client.post(add, recurring_form(membership, daily_9)).status_code == 302
    broadcast = RecurringBroadcast.objects.get()
    assert PeriodicTask.objects.get(pk=broadcast.periodic_task_id).enabled


def test_a_code_only_scenario_is_not_offered_and_an_existing_one_is_refused_by_name(catalog, admin_client, daily_9):
    withdrawal = Scenario.objects.get(code="point.withdrawal_requested")
    add = admin_client.get(reverse("admin:scenarios_recurringbroadcast_add"))
    offered = set(add.context["adminform"].form.fields["scenario"].queryset.values_list("code", flat=True))
    assert "membership.activated" in offered and "point.withdrawal_requested" not in offered

    # One saved before this check: its page says why, under the scenario.
    made = RecurringBroadcast.objects.create(
        name="提现", scenario=withdrawal, data={"withdrawal_id": "W1", "amount": "1"}, crontab=daily_9
    )
    change = reverse("admin:scenarios_recurringbroadcast_change", args=[made.pk])
    page = admin_client.post(
        change,
        recurring_form(
            withdrawal,
            daily_9,
            name="提现",
            data=json.dumps({"withdrawal_id": "W1", "amount": "1"}),
            recipients=json.dumps({"doctor": ["d-18"]}),
        ),
    )
    assert page.status_code == 200
    assert set(form_errors(page)) == {"scenario"}
    from scenarios.broadcasts import recurring_broadcast_problems

    problems = recurring_broadcast_problems(
        scenario=withdrawal, data={"withdrawal_id": "W1", "amount": "1"}, recipients={"doctor": ["d-18"]}
    )
    assert list(problems) == ["scenario"] and "验证码场景" in problems["scenario"][0]  # the console's language


@pytest.mark.parametrize(("minute", "refused"), [("*", True), ("*/30", True), ("0,30", True), ("0", False)])
def test_a_timetable_more_often_than_hourly_is_refused(catalog, admin_client, minute, refused):
    membership = Scenario.objects.get(code="membership.activated")
    crontab = CrontabSchedule.objects.create(minute=minute, hour="*", timezone="Asia/Shanghai")
    page = admin_client.post(reverse("admin:scenarios_recurringbroadcast_add"), recurring_form(membership, crontab))
    if refused:
        assert set(form_errors(page)) == {"crontab"}
        assert not RecurringBroadcast.objects.exists()
    else:
        assert page.status_code == 302


def test_a_refused_run_is_logged_by_name_and_the_list_shows_why(catalog, admin_client, daily_9, caplog):
    membership = Scenario.objects.get(code="membership.activated")
    RecurringBroadcast.objects.create(
        name="会员群发（旧）", scenario=membership, data={}, recipients={"patient": ["p-1"]}, crontab=daily_9
    )
    RecurringBroadcast.objects.create(
        name="会员群发", scenario=membership, data=MEMBERSHIP, recipients={"patient": ["p-1"]}, crontab=daily_9
    )
    old = RecurringBroadcast.objects.get(name="会员群发（旧）")

    with caplog.at_level(logging.ERROR, logger="scenarios.broadcasts"):
        assert broadcast_send(broadcast_id=old.pk) is None
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1 and "会员群发（旧）" in logged[0].getMessage()
    assert "invalid_data" in logged[0].getMessage()

    old.refresh_from_db()
    assert old.last_failure.startswith("invalid_data: data.membership_id") and old.last_failure_at is not None
    assert old.history.count() == 1  # a run's outcome is no change of the configuration

    rows = admin_client.get(reverse("admin:scenarios_recurringbroadcast_changelist")).content.decode()
    # The old one only: its last run's failure, and why a run now would be refused too.
    assert rows.count("data.membership_id") == 2
    assert rows.count('style="color: #ba2121"') == 2

    # Mended, the next run is accepted and the failure is cleared.
    RecurringBroadcast.objects.filter(pk=old.pk).update(data=MEMBERSHIP)
    assert broadcast_send(broadcast_id=old.pk) is not None
    old.refresh_from_db()
    assert (old.last_failure, old.last_failure_at) == ("", None)


# 2. Verification-code templates are never broadcast


def test_the_api_refuses_a_verification_code_template_by_field(catalog, backend, manual):
    answer = backend.post(
        "/api/v1/broadcasts",
        {
            "name": "验证码",
            "idempotency_key": "otp-broadcast",
            "template": "dc_point_0000002",
            "channels": ["sms"],
            "data": {"amount": "1"},
            "recipients": ["d-18"],
        },
        format="json",
    )
    assert answer.status_code == 400, answer.json()
    assert answer.json()["code"] == "invalid_broadcast"
    assert set(answer.json()["fields"]) == {"template"}
    assert not Broadcast.objects.exists()


def test_the_admin_broadcast_form_does_not_offer_verification_code_templates(catalog, admin_client):
    page = admin_client.get(reverse("admin:scenarios_broadcast_add"))
    offered = set(page.context["adminform"].form.fields["template"].queryset.values_list("code", flat=True))
    assert "dc_point_0000001" in offered and "dc_point_0000002" not in offered


# 3. The counts say what they count


def test_the_progress_page_says_failed_counts_people_not_written(catalog, admin_client, manual):
    template = Template.objects.get(code="dc_point_0000001")
    broadcast, _ = fanout.broadcast_create(
        name="积分",
        template=template,
        channels=["inbox"],
        data={"change": "+1", "balance": 1, "reason": "x"},
        external_ids=["d-1"],
    )
    listing = admin_client.get(reverse("admin:scenarios_broadcast_changelist")).content.decode()
    assert "not written" in listing.lower() or "未写入" in listing
    detail = admin_client.get(reverse("admin:scenarios_broadcast_change", args=[broadcast.pk])).content.decode()
    assert "SMS or pushes that fail later are not counted here" in detail or "不计" in detail


# 4. Messages


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"recipients": None}, "A list of external ids, or a segment, is required."),
        ({"segment": {}}, "Either a list of external ids or a segment, not both."),
    ],
)
def test_neither_and_both_get_their_own_words(catalog, backend, manual, change, words):
    body = {
        "name": "积分",
        "idempotency_key": "words",
        "template": "dc_point_0000001",
        "channels": ["inbox"],
        "data": {"change": "+1", "balance": 1, "reason": "x"},
        "recipients": ["d-1"],
        **change,
    }
    answer = backend.post("/api/v1/broadcasts", {k: v for k, v in body.items() if v is not None}, format="json")
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"recipients": [words]}


def test_every_field_s_problem_comes_in_one_answer(catalog, backend, manual):
    answer = backend.post(
        "/api/v1/broadcasts",
        {
            "idempotency_key": "many",
            "template": "dc_point_0000001",
            "channels": ["inbox", "fax", "wechat_oa_template"],
            "data": {"change": "+1", "balance": 1, "reason": "x"},
        },
        format="json",
    )
    assert answer.status_code == 400
    assert set(answer.json()["fields"]) == {"name", "channels.1", "channels.2", "recipients"}
    assert answer.json()["code"] == "invalid"  # a field missing: as before


def test_the_broadcast_problems_are_words_for_translation(catalog, monkeypatch):
    monkeypatch.setattr(fanout, "gettext", lambda words: f"«{words}»")
    problems = fanout.broadcast_problems(
        template=Template.objects.get(code="pt_membership_0000001"),
        channels=["app_push"],
        data={},
        external_ids=[],
        segment=False,
    )
    assert problems["channels.0"] == [
        "«The template has no enabled binding for %(channel)s.»".replace("%(channel)s", "app_push")
    ]
    assert problems["recipients"] == ["«A list of external ids, or a segment, is required.»"]
