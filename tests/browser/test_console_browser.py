"""An operations editor's day in the console, in a real browser (issue 7): log in, edit a
template, preview it, test-send it, and watch its coverage-matrix cell turn to working."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from playwright.sync_api import expect

from channels.models import Delivery, Recipient
from notifycenter.groups import groups_sync
from scenarios.models import TestRecipient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

TEMPLATE = "pt_inquiry_0000002"


@pytest.fixture
def editor(catalog):
    groups_sync(Group, Permission)
    user = User.objects.create_user("yunying", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="operations editor"))
    return user


PASSWORD = "correct horse battery"


def log_in(page, username="yunying", password=PASSWORD):
    page.goto(f"{page.base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{page.base}/admin/")


def matrix_state(page, template: str, column: int) -> str:
    page.goto(f"{page.base}/admin/scenarios/scenario/coverage/")
    cells = page.locator(f'tr[data-template="{template}"] .nc-cell')
    return cells.nth(column).get_attribute("data-state")


def test_an_editor_edits_previews_and_test_sends_a_template(page, shot, editor, sandbox):
    Recipient.objects.create(audience="patient", external_id="p-42", wechat_oa_openid="oOA-p42-0001")
    TestRecipient.objects.create(audience="patient", external_id="p-42", name="测试患者")
    log_in(page)
    assert "通知中心" in page.title()  # the console speaks Chinese by default

    # The OA-template column (third) of row 2 is bound but has never sent.
    assert matrix_state(page, TEMPLATE, 2) == "never_sent"
    shot(page, "1-matrix-before")

    # Edit the template: a typo in a variable is refused, with the reason on the page.
    page.goto(f"{page.base}/admin/scenarios/template/?q={TEMPLATE}")
    page.click(f"text={TEMPLATE}")
    page.fill("#id_body", "{{ department }}{{ doctor_nmae }}医生已接诊您的问诊。")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist", has_text="doctor_nmae").first).to_be_visible()
    shot(page, "2-template-refused")

    page.fill("#id_body", "{{ department }}{{ doctor_name }}医生已接诊您的问诊，请尽快进入问诊室。")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    shot(page, "3-template-saved")

    # Preview with other data, then test send to patient p-42 over both bound channels.
    page.goto(f"{page.base}/admin/scenarios/template/?q={TEMPLATE}")
    page.click(f"text={TEMPLATE}")
    page.click("#preview-link")
    page.wait_for_url("**/preview/")
    page.fill(
        "#id_sample_data",
        '{"inquiry_id": "9001", "order_no": "IQ202611250001", "doctor_name": "王芳", "department": "儿科"}',
    )
    page.click("input[name=_preview]")
    expect(page.locator(".nc-preview").first).to_contain_text("儿科王芳医生已接诊您的问诊，请尽快进入问诊室。")
    assert page.locator('tr.nc-channel[data-channel="wechat_oa_template"] .errorlist').count() == 0
    shot(page, "4-preview")

    page.fill("#id_external_id", "p-42")
    page.click("input[name=_test_send]")
    page.wait_for_selector("#test-send-results")
    page.wait_for_function("document.querySelectorAll('#test-send-results tr[data-status=sent]').length == 2")
    shot(page, "5-test-send")
    assert sorted(Delivery.objects.filter(template_code=TEMPLATE).values_list("channel", "status")) == [
        ("inbox", "sent"),
        ("wechat_oa_template", "sent"),
    ]
    (call,) = sandbox.calls("/message/template/send")
    assert call["body"]["data"]["thing1"]["value"] == "王芳"

    # The cell is working now.
    assert matrix_state(page, TEMPLATE, 2) == "working"
    assert matrix_state(page, TEMPLATE, 0) == "working"
    shot(page, "6-matrix-after")
