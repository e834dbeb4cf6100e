"""A scenario's, template's or plan's history page (历史) shows the changes to the rows edited on
its page (rules, channel bindings, plan steps), with what each change was; plan steps keep a
history at all."""

import html
import re
from datetime import time

import pytest
from django.apps import apps
from django.core.management import call_command
from django.urls import reverse

from scenarios.admin_history import ConfigHistoryAdmin
from scenarios.models import ChannelBinding, FollowUpPlan, PlanStep, Rule, Scenario, Template

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db):
    """The catalog as make run and deploys load it: each row with its first history record."""
    call_command("load_catalog", verbosity=0)


def page_text(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def section(text: str, title: str) -> str:
    """The part of the page from a child table's heading on."""
    assert title in text, text[-3000:]
    return text[text.index(title) :]


def test_a_scenarios_history_shows_its_rules_changes(catalog, admin_client):
    scenario = Scenario.objects.get(code="inquiry.paid")
    rule = scenario.rules.filter(offset_minutes=0).first() or scenario.rules.first()
    before = rule.offset_minutes
    rule.offset_minutes = before + 15
    rule.save()
    deleted = scenario.rules.exclude(pk=rule.pk).first()
    deleted_name = str(deleted)
    deleted.delete()

    text = page_text(admin_client.get(reverse("admin:scenarios_scenario_history", args=[scenario.pk])))

    rules = section(text, "所属规则的修改")
    assert f"{before} → {before + 15}" in rules  # the changed field, old → new
    assert deleted_name in rules and "已删除" in rules
    assert (
        reverse("admin:scenarios_rule_history", args=[rule.pk])
        in admin_client.get(reverse("admin:scenarios_scenario_history", args=[scenario.pk])).content.decode()
    )


def test_a_templates_history_shows_its_channel_bindings_changes(catalog, admin_client):
    template = Template.objects.get(code="dc_inquiry_0000001")
    binding = template.bindings.first()
    binding.enabled = not binding.enabled
    binding.save()

    text = page_text(admin_client.get(reverse("admin:scenarios_template_history", args=[template.pk])))

    bindings = section(text, "所属渠道绑定的修改")
    assert ("是 → 否" if not binding.enabled else "否 → 是") in bindings


def test_plan_steps_keep_a_history_shown_on_their_plans_page(catalog, admin_client):
    plan = FollowUpPlan.objects.get(code="post_consultation")
    step = plan.steps.first()
    step.time_of_day = time(10, 30)
    step.save()
    added = PlanStep.objects.create(plan=plan, order=99, template=step.template, day_offset=30)

    assert [h.history_type for h in added.history.all()] == ["+"]
    text = page_text(admin_client.get(reverse("admin:scenarios_followupplan_history", args=[plan.pk])))

    steps = section(text, "所属计划步骤的修改")
    assert "→ 10:30" in steps.replace("10:30:00", "10:30")
    assert str(added) in steps and "创建" in steps


def test_only_the_latest_changes_are_listed_and_the_page_says_so(catalog, admin_client, monkeypatch):
    monkeypatch.setattr(ConfigHistoryAdmin, "CHILD_HISTORY_LIMIT", 3)
    scenario = Scenario.objects.get(code="inquiry.paid")
    rule = scenario.rules.first()
    for minutes in (1, 2, 3, 4):
        rule.offset_minutes = minutes
        rule.save()

    text = page_text(admin_client.get(reverse("admin:scenarios_scenario_history", args=[scenario.pk])))

    rules = section(text, "所属规则的修改")
    assert "3 → 4" in rules and "2 → 3" in rules
    assert "最近 3 次修改" in rules


def test_a_history_page_of_another_scenario_shows_none_of_these(catalog, admin_client):
    changed = Rule.objects.filter(scenario__code="inquiry.paid").first()
    changed.offset_minutes = 777
    changed.save()
    other = Scenario.objects.exclude(code="inquiry.paid").first()

    text = page_text(admin_client.get(reverse("admin:scenarios_scenario_history", args=[other.pk])))

    assert "777" not in section(text, "所属规则的修改")


def test_the_migration_gives_existing_steps_a_first_record(catalog):
    from importlib import import_module

    migration = import_module("scenarios.migrations.0016_plan_step_history")
    PlanStep.history.all().delete()
    count = PlanStep.objects.count()
    assert count > 0

    migration.history_started(apps, None)

    assert PlanStep.history.count() == count
    assert set(PlanStep.history.values_list("history_type", "history_change_reason")) == {("+", "history started")}


def test_channel_binding_rows_are_not_mixed_across_templates(catalog, admin_client):
    template = Template.objects.get(code="dc_inquiry_0000001")
    other = ChannelBinding.objects.exclude(template=template).first()
    other.external_template_id = "changed-elsewhere-123"
    other.save()

    text = page_text(admin_client.get(reverse("admin:scenarios_template_history", args=[template.pk])))

    assert "changed-elsewhere-123" not in text


def test_the_history_pages_diffs_do_not_query_their_related_rows_each(catalog, admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    scenario = Scenario.objects.get(code="inquiry.paid")
    rule = scenario.rules.first()
    templates = list(Template.objects.filter(audience=rule.audience)[:2])

    def page_queries(edits: int) -> int:
        for n in range(edits):  # each change names another template: a related row on every diff
            rule.template = templates[n % 2]
            rule.save()
        with CaptureQueriesContext(connection) as captured:
            admin_client.get(reverse("admin:scenarios_scenario_history", args=[scenario.pk]))
        return len(captured)

    few = page_queries(2)
    many = page_queries(10)  # 12 changes in all
    # At most one more query per change (each row's name), not one per related row of each diff
    # as well (10 more changes read 19 more without the related rows joined).
    assert many - few <= 10, (few, many)
