"""Configuration that would break or silently change delivery is refused where it is saved, by the
admin form and by the import alike (the model's clean), each message naming its field; and a bad
row stored before these checks can neither stall the plans nor make intake answer 500."""

import html
import json
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import tablib
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from channels.models import PreferenceDefault
from scenarios.models import FollowUpPlan, Message, PlanStep, Rule, Scenario, Template
from scenarios.resources import RuleResource, ScenarioResource, TemplateResource

pytestmark = pytest.mark.django_db

BAD_SCHEMA = {"type": "objekt", "required": "inquiry_id"}
SH = ZoneInfo("Asia/Shanghai")


def refusal(instance) -> dict[str, list[str]]:
    with translation.override("en"), pytest.raises(ValidationError) as refused:
        instance.full_clean()
    return refused.value.message_dict


def import_rows(resource, change, *, fmt="csv", **filters):
    """Export `resource`'s rows matching `filters` in `fmt`, apply `change` to each, import as the
    admin's preview does (a dry run); returns the result."""
    exported = resource().export(queryset=resource._meta.model.objects.filter(**filters))
    rows = [change(dict(row)) for row in exported.dict]
    edited = tablib.Dataset(headers=exported.headers)
    for row in rows:
        edited.append([row[h] for h in exported.headers])
    text = getattr(edited, fmt)
    with translation.override("en"):
        return resource().import_data(tablib.Dataset().load(text, format=fmt), dry_run=True)


def row_errors(result) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for row in result.invalid_rows:
        for field, messages in row.error_dict.items():
            errors.setdefault(field, []).extend(str(m) for m in messages)
    return errors


# 1. A plan step's RRULE


@pytest.mark.parametrize(
    ("rrule", "words"),
    [
        ("FREQ=MINUTELY", "at most once a day"),
        ("FREQ=HOURLY;COUNT=3", "at most once a day"),
        ("FREQ=SECONDLY", "at most once a day"),
        ("FREQ=DAILY;BYHOUR=9,10", "at most once a day"),
        ("FREQ=BOGUS", "not a valid recurrence rule"),
        ("FREQ=DAILY;UNTIL=20261231T000000", "not a valid recurrence rule"),  # UNTIL must be UTC
        ("DTSTART:20200101T000000\nRRULE:FREQ=DAILY", "one rule"),
        ("FREQ=DAILY;COUNT=0", "COUNT must be at least 1"),
    ],
)
def test_a_plan_step_refuses_an_rrule_firing_more_than_daily_or_not_at_all(catalog, rrule, words):
    step = PlanStep.objects.filter(rrule="").first()
    step.rrule = rrule

    (message,) = refusal(step)["rrule"]
    assert message.startswith("RRULE: ") and words in message
    assert "invalid 'FREQ'" not in message or "recurrence rule" in message


@pytest.mark.parametrize(
    "rrule", ["FREQ=WEEKLY;BYDAY=MO;COUNT=4", "FREQ=DAILY", "RRULE:FREQ=MONTHLY;UNTIL=20271231T000000Z"]
)
def test_a_plan_step_takes_daily_or_rarer_rules_bounded_or_not(catalog, rrule):
    step = PlanStep.objects.filter(rrule="").first()
    step.rrule = rrule
    step.full_clean()


def test_the_plan_admin_refuses_a_minutely_step(catalog, admin_client):
    plan = FollowUpPlan.objects.get(code="post_consultation")
    steps = list(plan.steps.order_by("order"))
    data = {
        "code": plan.code,
        "name": plan.name,
        "description": plan.description,
        "enabled": "on",
        "steps-TOTAL_FORMS": len(steps),
        "steps-INITIAL_FORMS": len(steps),
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }
    for i, step in enumerate(steps):
        data.update(
            {
                f"steps-{i}-id": step.pk,
                f"steps-{i}-plan": plan.pk,
                f"steps-{i}-order": step.order,
                f"steps-{i}-template": step.template_id,
                f"steps-{i}-day_offset": step.day_offset,
                f"steps-{i}-time_of_day": "09:00:00",
                f"steps-{i}-rrule": "FREQ=MINUTELY" if step.rrule else "",
            }
        )
    page = admin_client.post(reverse("admin:scenarios_followupplan_change", args=[plan.pk]), data)
    with translation.override("zh-hans"):  # the page's language
        expected = PlanStep(rrule="FREQ=MINUTELY").rrule_problem()
    assert page.status_code == 200 and html.escape(expected) in page.content.decode()
    assert not PlanStep.objects.filter(rrule="FREQ=MINUTELY").exists()


def _dense_plan(rrule: str) -> FollowUpPlan:
    """A plan whose only step was stored before the RRULE check (no clean on a plain save)."""
    plan = FollowUpPlan.objects.create(code="dense", name="dense")
    PlanStep.objects.create(plan=plan, order=1, template=Template.objects.get(code="pt_plan_0000001"), rrule=rrule)
    return plan


def _enrol(backend, plan_code: str, start: str):
    body = {
        "event": "plan.enrolled",
        "idempotency_key": f"enrol-{plan_code}-{start}",
        "data": {"plan": plan_code, "enrollment_id": "FU-1", "start_date": start},
        "recipients": {"patient": ["p-42"]},
    }
    return backend.post("/api/v1/events", body, format="json")


def test_a_stored_hourly_step_materializes_nothing_and_stalls_nothing(catalog, backend):
    from scenarios.plans import plans_materialize_due

    _dense_plan("FREQ=HOURLY")
    started = time.monotonic()
    answer = _enrol(backend, "dense", date.today().isoformat())
    plans_materialize_due(now=datetime.now(SH) + timedelta(days=3))

    assert answer.status_code == 202, answer.json()
    assert Message.objects.filter(plan_step__plan__code="dense").count() == 0  # was 48 a scan
    assert time.monotonic() - started < 10


def test_an_rrule_is_walked_lazily_never_listed_whole(catalog, monkeypatch):
    """Even a rule the check let through is walked one occurrence at a time, at most SCAN_LIMIT of
    them, and no further than the horizon: the 10-year look-ahead once listed every occurrence."""
    from dateutil import rrule as dateutil_rrule

    from channels.models import Recipient
    from scenarios import plans
    from scenarios.models import Event

    walked = []

    class Counted:
        def __init__(self, rule):
            self.rule = rule

        def __iter__(self):
            for at in self.rule:
                walked.append(at)
                yield at

        def between(self, after, before, inc=False):  # as dateutil's: walked from the start
            found = []
            for at in self:
                if at >= before:
                    return found
                if at > after:
                    found.append(at)
            return found

    monkeypatch.setattr(plans, "rrulestr", lambda text, **kw: Counted(dateutil_rrule.rrulestr(text, **kw)))
    monkeypatch.setattr(PlanStep, "rrule_problem", lambda self: "")  # as a rule the check let through
    plan = _dense_plan("FREQ=HOURLY")
    now = datetime.now(SH)
    event = Event.objects.create(
        scenario=Scenario.objects.get(code="plan.enrolled"), client="t", idempotency_key="k", occurred_at=now
    )
    recipient = Recipient.objects.create(audience="patient", external_id="p-dense")
    plans.plan_enroll(event=event, plan=plan, recipient=recipient, key="FU-2", start=now.date(), now=now)

    # From 09:00 today to the horizon's end (48 h), twice (occurrences, then whether any is left);
    # the old look-ahead walked 10 years of hours.
    assert len(walked) < 2 * (24 + 48 + 2)


# 2. JSON Schemas: a scenario's data schema, a rule's condition


def test_a_scenario_refuses_a_data_schema_that_is_no_json_schema(catalog):
    scenario = Scenario.objects.get(code="inquiry.accepted")
    scenario.data_schema = BAD_SCHEMA

    (message,) = refusal(scenario)["data_schema"]
    assert message.startswith("data schema is not a valid JSON Schema") and "objekt" in message


def test_a_rule_refuses_a_condition_that_is_no_json_schema(catalog):
    rule = Rule.objects.get(code="doctor_accept_reminder")
    rule.condition = {"properties": {"consultation_type": {"enum": "phone"}}}

    (message,) = refusal(rule)["condition"]
    assert message.startswith("condition is not a valid JSON Schema") and "enum" in message


def test_the_import_refuses_a_bad_data_schema_and_a_bad_condition(catalog):
    scenarios = import_rows(
        ScenarioResource, lambda row: {**row, "data_schema": json.dumps(BAD_SCHEMA)}, code="inquiry.accepted"
    )
    rules = import_rows(
        RuleResource, lambda row: {**row, "condition": json.dumps(BAD_SCHEMA)}, code="doctor_accept_reminder"
    )

    assert "objekt" in " ".join(row_errors(scenarios)["data_schema"])
    assert "objekt" in " ".join(row_errors(rules)["condition"])


def test_the_import_refuses_what_the_console_refuses_for_a_new_scenario(catalog):
    """The console's checks for a scenario configured from nothing (tests/test_new_scenario_walkthrough.py)
    are the models', so a file refuses them too: a reminder anchored on a field the data has not,
    cancelled by an event no scenario has, sample data the schema refuses."""
    reminder = Rule.objects.filter(anchor_field__gt="").first()
    rules = import_rows(
        RuleResource,
        lambda row: {**row, "anchor_field": "appointment_tme", "cancel_on": json.dumps(["no.such.event"])},
        pk=reminder.pk,
    )
    scenarios = import_rows(
        ScenarioResource, lambda row: {**row, "sample_data": json.dumps({"inquiry_id": 7})}, code="inquiry.paid"
    )

    errors = row_errors(rules)
    assert "appointment_tme" in " ".join(errors["anchor_field"])
    assert "no.such.event" in " ".join(errors["cancel_on"])
    assert "does not match the data schema" in " ".join(row_errors(scenarios)["sample_data"])


@pytest.mark.parametrize("schema", [BAD_SCHEMA, {"$ref": "#/$defs/nowhere"}])
def test_a_bad_data_schema_stored_before_refuses_the_event_with_a_code_not_a_500(catalog, backend, schema):
    from tests.factories import paid_event

    scenario = Scenario.objects.get(code="inquiry.paid")
    scenario.data_schema = schema
    scenario.save()  # as stored before the check (a plain save does not clean)

    answer = backend.post("/api/v1/events", paid_event(), format="json")

    assert answer.status_code == 409, answer.content
    assert answer.json()["code"] == "scenario_misconfigured"
    assert not Message.objects.exists()


def test_a_bad_condition_stored_before_refuses_the_event_with_a_code_not_a_500(catalog, backend):
    from tests.factories import paid_event

    rule = Rule.objects.get(code="doctor_accept_reminder")
    rule.condition = {"properties": {"consultation_type": {"type": "nonsense"}}}
    rule.save()

    answer = backend.post("/api/v1/events", paid_event(), format="json")

    assert answer.status_code == 409 and answer.json()["code"] == "scenario_misconfigured"


# 3. A template's import runs the change form's checks


def test_the_template_import_refuses_a_body_the_change_form_refuses(catalog):
    body = "{{ doctor_name 已接诊 {% if %}"
    result = import_rows(TemplateResource, lambda row: {**row, "body": body}, code="pt_inquiry_0000002")

    errors = row_errors(result)
    assert result.has_validation_errors() and errors["body"][0].startswith("body: ")
    assert Template.objects.get(code="pt_inquiry_0000002").body != body


def test_the_template_import_refuses_a_variable_missing_from_the_sample(catalog):
    result = import_rows(
        TemplateResource, lambda row: {**row, "body": "{{ doctor_nmae }}医生已接诊"}, code="pt_inquiry_0000002"
    )

    assert row_errors(result)["body"] == ["body: the variable doctor_nmae is not in the data"]


def test_the_admin_import_preview_shows_the_refused_template_and_offers_no_confirm(catalog, admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    exported = TemplateResource().export(queryset=Template.objects.filter(code="pt_inquiry_0000002"))
    rows = exported.dict
    rows[0]["body"] = "{{ doctor_name 已接诊 {% if %}"
    edited = tablib.Dataset()
    edited.dict = rows
    upload = SimpleUploadedFile("templates.csv", edited.csv.encode(), content_type="text/csv")
    with translation.override("en"):
        page = admin_client.post(
            reverse("admin:scenarios_template_import"), {"import_file": upload, "format": "0", "resource": "0"}
        ).content.decode()

    assert "validation-error-list" in page and 'name="process_import"' not in page


def test_every_catalog_template_passes_its_own_checks(catalog):
    # So the catalog's export imports again, and the checks refuse only what is broken.
    for template in Template.objects.all():
        template.full_clean()


# 4. A rule's delivery policies


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"cap_count": 0}, "cap_count", "at least 1"),
        ({"fallback_chain": ["fax", "sms"]}, "fallback_chain", "unknown channel fax"),
        ({"fallback_chain": "sms"}, "fallback_chain", "a list of channels"),
        ({"fallback_chain": ["sms", "sms"]}, "fallback_chain", "each channel once"),
        (
            {"fallback_chain": ["wechat_mini_subscribe", "sms"]},
            "fallback_chain",
            "no binding for wechat_mini_subscribe",
        ),
        ({"dedup_field": "no_such_field"}, "dedup_field", "no_such_field is not a field"),
        ({"quiet_start": "22:00"}, "quiet_end", "both ends"),
        ({"quiet_end": "08:00"}, "quiet_start", "both ends"),
        ({"quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_end", "no quiet hours"),
        ({"cap_count": 3, "collapse_template": "pt_inquiry_0000001"}, "collapse_template", "another audience"),
        ({"collapse_template": "dc_inquiry_0000001"}, "collapse_template", "set the cap too"),
        ({"cap_count": 3, "cap_window_minutes": 0}, "cap_window_minutes", "at least 1 minute"),
    ],
)
def test_a_rule_refuses_policy_values_that_silence_or_are_ignored(catalog, changes, field, words):
    from datetime import time as clock

    rule = Rule.objects.get(code="doctor_accept_reminder")
    for name, value in changes.items():
        if name == "collapse_template":
            value = Template.objects.get(code=value)
        elif name.startswith("quiet_"):
            value = clock.fromisoformat(value)
        setattr(rule, name, value)

    messages = refusal(rule)[field]
    label = str(Rule._meta.get_field(field).verbose_name)
    assert any(m.startswith(f"{label}: ") and words in m for m in messages), messages


def test_a_rule_takes_sound_policy_values(catalog):
    from datetime import time as clock

    rule = Rule.objects.get(code="doctor_accept_reminder")
    rule.cap_count, rule.collapse_template = 3, Template.objects.get(code="dc_inquiry_0000001")
    rule.fallback_chain = ["app_push", "sms"]
    rule.dedup_field = "inquiry_id"
    rule.quiet_start, rule.quiet_end = clock(22), clock(8)
    rule.full_clean()


def _rule_form(rule: Rule, **changes) -> dict:
    data = {}
    for f in Rule._meta.fields:
        if f.name == "id":
            continue
        value = getattr(rule, f.attname)
        if f.get_internal_type() == "JSONField":
            value = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            value = "on" if value else ""
        data[f.name] = "" if value is None else value
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_the_rule_admin_and_the_import_refuse_the_same_policy_values(catalog, admin_client):
    rule = Rule.objects.get(code="doctor_accept_reminder")
    url = reverse("admin:scenarios_rule_change", args=[rule.pk])
    page = admin_client.post(url, _rule_form(rule, cap_count=0, fallback_chain='"sms"')).content.decode()
    imported = import_rows(
        RuleResource, lambda row: {**row, "cap_count": 0, "fallback_chain": '"sms"'}, code="doctor_accept_reminder"
    )

    with translation.override("zh-hans"):  # the page's language (the field labels are translated)
        rule.cap_count, rule.fallback_chain = 0, "sms"
        expected = rule.policy_problems()
    assert html.escape(expected["cap_count"][0]) in page and html.escape(expected["fallback_chain"][0]) in page
    assert Rule.objects.get(pk=rule.pk).cap_count is None
    errors = row_errors(imported)
    assert errors["cap_count"][0].startswith("cap: at least 1")
    assert errors["fallback_chain"][0].startswith("fallback chain: a list of channels")


# 5. An audience's preference defaults


@pytest.mark.parametrize(
    ("channels", "categories", "field", "words"),
    [
        (
            {"fax": False, "sms": "no"},
            {},
            "channels",
            ["channels.fax: Unknown channel", "channels.sms: true or false."],
        ),
        ({}, {"nope": {"sms": False}}, "categories", ["categories.nope: Unknown category"]),
        ({}, {"points": {"sms": 0}}, "categories", ["categories.points.sms: true or false."]),
        ([], {}, "channels", ["channels: An object"]),
    ],
)
def test_preference_defaults_refuse_what_the_preferences_api_refuses(db, channels, categories, field, words):
    default = PreferenceDefault(audience="patient", channels=channels, categories=categories)

    messages = refusal(default)[field]
    assert all(any(m.startswith(w) for m in messages) for w in words), messages


def test_the_preference_default_admin_refuses_an_unknown_channel(db, admin_client):
    data = {"audience": "patient", "channels": '{"fax": false}', "categories": "{}"}
    page = admin_client.post(reverse("admin:channels_preferencedefault_add"), data).content.decode()

    assert "channels.fax: Unknown channel" in page
    assert not PreferenceDefault.objects.exists()
    PreferenceDefault(
        audience="patient", channels={"sms": False}, categories={"points": {"app_push": False}}
    ).full_clean()
