"""An operations editor configuring a scenario that is not in the catalog (疫苗接种提醒) in the
console: what the walkthrough found saved without a word, each refused at save now, and the
scenario, once configured, working end to end from the backend's events."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from scenarios.models import ChannelBinding, Event, LinkTarget, Message, Rule, Scenario, Template

pytestmark = pytest.mark.django_db

FIELDS = ["booking_id", "patient_name", "vaccine", "clinic", "appointment_time"]
SCHEMA = {
    "type": "object",
    "required": FIELDS,
    "properties": {name: {"type": "string"} for name in FIELDS},
}
SAMPLE = {
    "booking_id": "VB001",
    "patient_name": "张三",
    "vaccine": "流感疫苗",
    "clinic": "预防接种门诊",
    "appointment_time": "2026-12-05T09:30:00+08:00",
}


@pytest.fixture
def editor(client, db):
    from notifycenter.groups import groups_sync

    groups_sync(Group, Permission)
    user = User.objects.create_user("yunying", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="operations editor"))
    client.force_login(user)
    return client


def scenario_post(code="vaccination.booked", subject_type="booking", sample=SAMPLE, rules=()):
    import json

    data = {
        "code": code,
        "name": "疫苗接种",
        "domain": "inquiry",
        "enabled": "on",
        "subject_type": subject_type,
        "data_schema": json.dumps(SCHEMA),
        "sample_data": json.dumps(sample, ensure_ascii=False),
        "backend_call": "",
        "effect": "",
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    for i, rule in enumerate(rules):
        fields = {
            "code": "r",
            "audience": "patient",
            "template": "",
            "enabled": "on",
            "condition": "{}",
            "default_recipients": "[]",
            "anchor_field": "",
            "offset_minutes": "0",
            "grace_minutes": "0",
            "cancel_on": "[]",
            "reschedule_on": "[]",
            "importance": "transactional",
            "quiet_hours": "hold",
            "cap_window_minutes": "10",
            "dedup_window_minutes": "10",
            "fallback_chain": "[]",
            **rule,
        }
        data.update({f"rules-{i}-{k}": v for k, v in fields.items()})
    return data


def template(code="pt_vaccine_0000002", audience="patient") -> Template:
    tpl = Template.objects.create(
        code=code, name=code, audience=audience, category="system", title="接种提醒", body="{{ patient_name }}"
    )
    ChannelBinding.objects.create(template=tpl, channel="inbox")
    return tpl


def errors_of(answer) -> str:
    form = answer.context["adminform"].form
    inline = [str(e) for formset in answer.context["inline_admin_formsets"] for e in formset.formset.errors]
    return str(form.errors) + "".join(inline)


def test_a_subject_type_without_its_id_field_is_saved_with_a_warning(editor):
    # The walkthrough's subject type "vaccination" with data holding booking_id: every event's
    # subject was empty and vaccination.cancelled called off nothing ("cancelled_reminders": 0).
    # Saved all the same (a backend may send each event's `subject` itself), with the page saying so.
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(subject_type="vaccination"), follow=True)
    warnings = [str(m) for m in answer.context["messages"]]
    assert any("vaccination_id" in w and "booking" in w for w in warnings), warnings
    assert Scenario.objects.filter(subject_type="vaccination").exists()
    answer = editor.post(
        "/admin/scenarios/scenario/add/",
        scenario_post(code="vaccination.rebooked", subject_type="booking"),
        follow=True,
    )
    assert not any("_id" in str(m) for m in answer.context["messages"])


def test_sample_data_that_does_not_match_the_schema_is_refused(editor):
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(sample={"booking_id": 7}))
    assert answer.status_code == 200
    text = errors_of(answer)
    assert "data.booking_id" in text and "patient_name" in text
    assert not Scenario.objects.exists()


def test_a_rule_anchored_on_a_field_the_data_has_not_is_refused(editor):
    # Saved in the walkthrough, then every vaccination.booked was refused 400 invalid_event.
    tpl = template()
    rule = {"code": "sms_day_before", "template": str(tpl.pk), "anchor_field": "appointment_tme"}
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(rules=[rule]))
    assert answer.status_code == 200
    assert "appointment_tme" in errors_of(answer) and "appointment_time" in errors_of(answer)
    assert not Rule.objects.exists()


def test_cancelled_by_must_name_an_existing_event_and_another_subject_is_warned(editor):
    tpl = template()
    rule = {
        "code": "sms_day_before",
        "template": str(tpl.pk),
        "anchor_field": "appointment_time",
        "offset_minutes": "-1440",
        "cancel_on": '["vaccination.canceled"]',
    }
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(rules=[rule]))
    assert answer.status_code == 200 and "vaccination.canceled" in errors_of(answer)

    Scenario.objects.create(code="vaccination.canceled", name="x", domain="inquiry", subject_type="order")
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(rules=[rule]), follow=True)
    warnings = [str(m) for m in answer.context["messages"]]
    assert any("vaccination.canceled" in w and "booking" in w for w in warnings), warnings
    assert Rule.objects.filter(code="sms_day_before").exists()


def test_cancelled_by_on_a_rule_that_is_not_a_reminder_is_refused(editor):
    tpl = template()
    Scenario.objects.create(code="vaccination.cancelled", name="x", domain="inquiry", subject_type="booking")
    rule = {"code": "now", "template": str(tpl.pk), "cancel_on": '["vaccination.cancelled"]'}
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(rules=[rule]))
    assert answer.status_code == 200
    assert "cancel_on" in answer.context["inline_admin_formsets"][0].formset.errors[0]
    assert not Rule.objects.exists()


def test_a_rule_whose_template_is_for_another_audience_is_refused(editor):
    tpl = template(code="yy_vaccine_0000001", audience="operations")
    answer = editor.post(
        "/admin/scenarios/scenario/add/", scenario_post(rules=[{"code": "r", "template": str(tpl.pk)}])
    )
    assert answer.status_code == 200 and "yy_vaccine_0000001" in errors_of(answer)


def test_a_new_template_takes_its_sample_data_from_the_chosen_scenario(editor):
    scenario = Scenario.objects.create(
        code="vaccination.booked", name="疫苗", domain="inquiry", data_schema=SCHEMA, sample_data=SAMPLE
    )
    # The scenario page links to the template form with the scenario chosen and its sample filled in.
    page = editor.get(f"/admin/scenarios/scenario/{scenario.pk}/change/")
    assert f"/admin/scenarios/template/add/?sample_scenario={scenario.pk}" in page.content.decode()
    form = editor.get(f"/admin/scenarios/template/add/?sample_scenario={scenario.pk}").context["adminform"].form
    assert form.initial["sample_data"] == SAMPLE

    # Saved with the sample data box left empty: the scenario's sample renders the preview, no
    # "no variable patient_name in the data".
    link = LinkTarget.objects.create(code="vaccination_detail", name="x", route="v", params={"id": "{{ booking_id }}"})
    data = {
        "code": "pt_vaccine_0000001",
        "name": "预约成功",
        "audience": "patient",
        "category": "system",
        "title": "预约成功",
        "body": "{{ patient_name }}，请于{{ appointment_time | datetime }}到{{ clinic }}接种{{ vaccine }}",
        "link": str(link.pk),
        "buttons": "[]",
        "sample_scenario": str(scenario.pk),
        "sample_data": "",
        "bindings-TOTAL_FORMS": "1",
        "bindings-INITIAL_FORMS": "0",
        "bindings-MIN_NUM_FORMS": "0",
        "bindings-MAX_NUM_FORMS": "1000",
        "bindings-0-channel": "inbox",
        "bindings-0-enabled": "on",
        "bindings-0-params": "{}",
        "bindings-0-options": "{}",
    }
    answer = editor.post("/admin/scenarios/template/add/", data)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert Template.objects.filter(code="pt_vaccine_0000001").exists()


def test_the_configured_scenario_runs_from_the_backends_events(editor, backend):
    """The walkthrough's end: booked → inbox now and two reminders; cancelled → both called off
    and operations told."""
    booked_tpl, sms_tpl, ops_tpl = (
        template("pt_vaccine_0000001"),
        template(),
        template("yy_vaccine_0000001", "operations"),
    )
    ops_tpl.body = "{{ booking_id }} 已取消"
    ops_tpl.save()
    cancelled = scenario_post(
        code="vaccination.cancelled",
        rules=[
            {"code": "ops", "audience": "operations", "template": str(ops_tpl.pk), "default_recipients": '["ops-duty"]'}
        ],
    )
    assert editor.post("/admin/scenarios/scenario/add/", cancelled).status_code == 302
    rules = [
        {"code": "booked", "template": str(booked_tpl.pk)},
        {
            "code": "day_before",
            "template": str(sms_tpl.pk),
            "anchor_field": "appointment_time",
            "offset_minutes": "-1440",
            "cancel_on": '["vaccination.cancelled"]',
        },
        {
            "code": "half_hour",
            "template": str(sms_tpl.pk),
            "anchor_field": "appointment_time",
            "offset_minutes": "-30",
            "cancel_on": '["vaccination.cancelled"]',
        },
    ]
    answer = editor.post("/admin/scenarios/scenario/add/", scenario_post(rules=rules))
    assert answer.status_code == 302, errors_of(answer)

    at = (timezone.now() + timedelta(days=3)).isoformat()
    data = {**SAMPLE, "booking_id": "VB9", "appointment_time": at}
    first = backend.post(
        "/api/v1/events",
        {"event": "vaccination.booked", "idempotency_key": "vb9", "data": data, "recipients": {"patient": ["p-9"]}},
        format="json",
    )
    assert first.status_code == 202, first.content
    assert first.json()["subject"] == {"type": "booking", "id": "VB9"}
    assert Message.objects.filter(status="scheduled").count() == 2
    second = backend.post(
        "/api/v1/events", {"event": "vaccination.cancelled", "idempotency_key": "vb9-c", "data": data}, format="json"
    )
    assert second.status_code == 202, second.content
    assert second.json()["cancelled_reminders"] == 2
    assert [m["recipient"] for m in second.json()["messages"]] == ["ops-duty"]
    # The cancellation's page says what it did to the booking's reminders (they are the booking's messages).
    cancelled = Event.objects.get(idempotency_key="vb9-c")
    page = editor.get(f"/admin/scenarios/event/{cancelled.pk}/change/").content.decode()
    assert "提醒已取消" in page and "2 条 booking VB9 的待发提醒" in page


def test_the_rules_delivery_policies_are_folded_and_every_rule_field_is_on_the_scenario_page(editor):
    tpl = template()
    scenario = Scenario.objects.create(code="vaccination.booked", name="疫苗", domain="inquiry", data_schema=SCHEMA)
    Rule.objects.create(scenario=scenario, code="r", audience="patient", template=tpl)
    page = editor.get(f"/admin/scenarios/scenario/{scenario.pk}/change/").content.decode()
    assert page.count("<details>") == 2  # the rule's policies folded, and in the blank "add another" form
    for field in Rule._meta.fields:
        if field.editable and field.name not in ("id", "scenario"):
            assert f'name="rules-0-{field.name}"' in page, field.name


def test_a_test_send_to_someone_without_the_address_says_so_in_the_readers_words(editor):
    from channels.models import Delivery, Recipient

    tpl = template()
    person = Recipient.objects.create(audience="patient", external_id="p-test")
    delivery = Delivery.objects.create(
        channel="sms",
        recipient=person,
        idempotency_key="test:x",
        status="skipped",
        last_error_code="no_address",
        last_error_message="The recipient has no address on sms.",
        not_before=timezone.now(),
    )
    page = editor.get(f"/admin/scenarios/template/{tpl.pk}/preview/?sent={delivery.pk}").content.decode()
    assert "The recipient has no address on sms." not in page  # the engine's English
    assert "(no_address)" in page and "test-send-address-hint" in page
    assert f"/admin/channels/recipient/{person.pk}/change/" in page


def test_the_schema_help_is_in_the_readers_language():
    from django.utils import translation

    from scenarios.forms_scenario import ScenarioForm

    # Formatted at import, it was frozen in the language of the process's start.
    for language, words in (("en", "JSON Schema of the event's data"), ("zh-hans", "事件数据的 JSON Schema")):
        with translation.override(language):
            assert str(ScenarioForm().fields["data_schema"].help_text).startswith(words)
