"""The console's Content-Security-Policy in a real browser: each kind of console page renders with
no violation (no inline script or event handler is left on any of them), and what used to be
inline still works from the console's static files: the language switch, the coverage matrix's
domain, a periodic task's timetable in words, the export page's select-all.

The policy itself is in settings.py (django-csp); a page that breaks it shows here as a
`securitypolicyviolation` event, which the browser fires for every refused script or handler."""

import pytest
from django.contrib.auth.models import User
from django_celery_beat.models import CrontabSchedule
from playwright.sync_api import expect

from scenarios.models import Scenario, Template

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "correct horse battery"

# Recorded before any page script runs (an init script is not subject to the page's policy).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber} ${e.sample}`);
});
"""


@pytest.fixture
def admin_page(page, catalog):
    User.objects.create_superuser("root", password=PASSWORD)
    page.context.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{page.base}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{page.base}/admin/")
    return page


def violations(page) -> list[str]:
    return page.evaluate("window.__csp")


def console_pages() -> list[str]:
    scenario = Scenario.objects.order_by("pk").first()
    template = Template.objects.order_by("pk").first()
    return [
        "/admin/",
        "/admin/scenarios/scenario/",
        f"/admin/scenarios/scenario/{scenario.pk}/change/",
        f"/admin/scenarios/scenario/{scenario.pk}/history/",
        "/admin/scenarios/scenario/coverage/",
        f"/admin/scenarios/template/{template.pk}/change/",
        "/admin/scenarios/template/add/",
        "/admin/scenarios/broadcast/add/",
        "/admin/channels/delivery/",
        "/admin/channels/channelaccount/add/",
        "/admin/channels/recipient/",
        "/admin/inbox/inboxmessage/",
        "/admin/django_celery_beat/periodictask/add/",
        "/admin/django_celery_beat/crontabschedule/add/",
        "/admin/scenarios/scenario/export/",
        "/admin/scenarios/scenario/import/",
        "/admin/auth/user/add/",
        "/admin/password_change/",
    ]


def test_every_kind_of_console_page_renders_without_a_policy_violation(admin_page):
    page = admin_page
    refused = {}
    for path in console_pages():
        response = page.goto(f"{page.base}{path}")
        assert response.status == 200, path
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        page.wait_for_load_state("load")
        if found := violations(page):
            refused[path] = found
    assert refused == {}


def test_an_inline_script_in_a_page_is_refused(admin_page):
    """The policy is really applied: a script that got into a page (here put in by hand, as an
    unescaped value would be) does not run, and the browser reports it."""
    page = admin_page
    page.goto(f"{page.base}/admin/")
    ran = page.evaluate(
        """() => { window.__ran = false;
        const s = document.createElement("script"); s.textContent = "window.__ran = true";
        document.body.append(s); return window.__ran; }"""
    )
    assert ran is False
    assert any("script-src" in v for v in violations(page))


def test_the_language_switch_still_switches(admin_page):
    page = admin_page
    page.goto(f"{page.base}/admin/")
    assert page.get_attribute("html", "lang") == "zh-hans"
    page.select_option("select[name=language]", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert violations(page) == []


def test_the_coverage_matrix_domain_still_filters_on_change(admin_page):
    page = admin_page
    page.goto(f"{page.base}/admin/scenarios/scenario/coverage/")
    value = page.locator("#domain option").nth(1).get_attribute("value")
    page.select_option("#domain", value)
    page.wait_for_url(f"**/coverage/?domain={value}")
    assert violations(page) == []


def test_a_periodic_tasks_crontab_is_described_beside_it(admin_page):
    CrontabSchedule.objects.create(minute="0", hour="9", timezone="Asia/Shanghai")
    page = admin_page
    page.goto(f"{page.base}/admin/django_celery_beat/periodictask/add/")
    page.select_option("#id_crontab", index=1)
    expect(page.locator(".field-crontab .help")).to_contain_text("时间表说明: ")
    assert violations(page) == []


def test_the_export_pages_select_all_still_toggles(admin_page):
    page = admin_page
    page.goto(f"{page.base}/admin/scenarios/scenario/export/")
    toggle = page.locator("input.select-toggle").first
    boxes = page.locator("input[type=checkbox]:not(.select-toggle):visible")
    toggle.uncheck()
    assert boxes.count() > 1
    assert all(not box.is_checked() for box in boxes.all())
    assert violations(page) == []
