"""An operations editor configuring a scenario that is not in the catalog (疫苗接种提醒) in the
real browser: what was saved without a word is refused on the page with what to do, and a new
template reached from its scenario starts with the scenario's sample data."""

import json

import pytest
from django.contrib.auth.models import Group, Permission, User
from playwright.sync_api import expect

from notifycenter.groups import groups_sync
from scenarios.models import Rule, Scenario, Template
from tests.test_new_scenario_walkthrough import SAMPLE, SCHEMA  # the same example scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "correct horse battery"


@pytest.fixture
def editor(db):
    groups_sync(Group, Permission)
    user = User.objects.create_user("yunying", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="operations editor"))
    template = Template.objects.create(
        code="pt_vaccine_0000002", name="接种前一天", audience="patient", category="system", title="t", body="b"
    )
    return template


def log_in(page):
    page.goto(f"{page.base}/admin/login/")
    page.fill("#id_username", "yunying")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{page.base}/admin/")


def test_a_new_scenario_is_refused_or_warned_with_what_to_fix_then_leads_to_its_template(page, shot, editor):
    log_in(page)
    page.goto(f"{page.base}/admin/scenarios/scenario/add/")
    page.fill("#id_code", "vaccination.booked")
    page.fill("#id_name", "疫苗接种预约成功")
    page.select_option("#id_domain", index=1)
    page.fill("#id_subject_type", "vaccination")  # the data has booking_id, not vaccination_id
    page.fill("#id_data_schema", json.dumps(SCHEMA))
    page.fill("#id_sample_data", json.dumps(SAMPLE, ensure_ascii=False))
    # A reminder one day before, anchored on a misspelt field and cancelled by an unknown event.
    page.click("#rules-group .add-row a")
    page.fill("#id_rules-0-code", "sms_day_before")
    page.select_option("#id_rules-0-audience", value="patient")
    page.click("#rules-0 .field-template .select2-selection")
    page.keyboard.type("pt_vaccine")
    page.locator(".select2-results__option", has_text="pt_vaccine_0000002").click()
    page.fill("#id_rules-0-anchor_field", "appointment_tme")
    page.fill("#id_rules-0-offset_minutes", "-1440")
    page.fill("#id_rules-0-cancel_on", '["vaccination.canceled"]')
    page.click("input[name=_continue]")

    expect(page.locator("#rules-0 .field-anchor_field .errorlist")).to_contain_text("appointment_time")
    expect(page.locator("#rules-0 .field-cancel_on .errorlist")).to_contain_text("vaccination.canceled")
    shot(page, "new-scenario-refused")
    assert not Scenario.objects.exists()

    page.fill("#id_rules-0-anchor_field", "appointment_time")
    page.fill("#id_rules-0-cancel_on", "[]")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    # Saved (a backend may send each event's subject itself), and the page says what is missing.
    expect(page.locator(".messagelist .warning")).to_contain_text("vaccination_id")
    expect(page.locator(".messagelist .warning")).to_contain_text("booking")
    assert Rule.objects.get().anchor_field == "appointment_time"
    page.fill("#id_subject_type", "booking")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    expect(page.locator(".messagelist .warning")).to_have_count(0)
    # The rule's delivery policies are folded.
    expect(page.locator("#rules-0 details")).to_have_count(1)
    expect(page.locator("#id_rules-0-cap_count")).to_be_hidden()

    page.click("#add-template-link")
    page.wait_for_url("**/scenarios/template/add/?sample_scenario=*")
    assert json.loads(page.input_value("#id_sample_data")) == SAMPLE
    shot(page, "new-scenario-template-add")
