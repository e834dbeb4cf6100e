"""The operations console (issue 7): template preview and checks, test send, coverage matrix,
delivery timeline with retry and cancel, import and export, the permission groups, history."""

import html
import json
import re
from datetime import timedelta

import pytest
import tablib
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from scenarios.models import ChannelBinding, Event, LinkTarget, Message, Rule, Scenario, Template, TestRecipient
from scenarios.resources import RESOURCES

pytestmark = pytest.mark.django_db(transaction=True)

TEMPLATE = "pt_inquiry_0000002"  # row 2: inbox and an official-account template message


def staff(username: str, group: str) -> User:
    """A console user in one of the groups the migration makes (made again here: a transactional
    test's flush empties the groups table)."""
    from django.contrib.auth.models import Permission

    from notifycenter.groups import groups_sync

    groups_sync(Group, Permission)
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def editor_client(catalog, client):
    client.force_login(staff("editor", "operations editor"))
    return client


@pytest.fixture
def sandbox(fake_providers):
    from django.core.management import call_command

    call_command("bootstrap_local", stdout=__import__("io").StringIO())
    return fake_providers


def label(field: str) -> str:
    return str(Template._meta.get_field(field).verbose_name)


def missing_variable(field: str, name: str) -> str:
    """The refusal of a missing variable as the page writes it (English until the lead adds its
    translation: hence gettext here, not the Chinese words)."""
    with translation.override("zh-hans"):
        words = gettext("%(field)s: the variable %(name)s is not in the data") % {"field": label(field), "name": name}
    return html.escape(words)


def change_form_data(template: Template, **changes) -> dict:
    """The template's change form as the browser would post it, with `changes` applied."""
    data = {
        "code": template.code,
        "name": template.name,
        "audience": template.audience,
        "category": template.category,
        "title": template.title,
        "body": template.body,
        "link": template.link_id or "",
        "buttons": json.dumps(template.buttons, ensure_ascii=False),
        "sample_data": json.dumps(changes.pop("sample_data", None) or {}),
    }
    if template.is_verification_code:
        data["is_verification_code"] = "on"
    if template.critical:
        data["critical"] = "on"
    bindings = list(template.bindings.order_by("pk"))
    binding_changes = changes.pop("bindings", {})
    data.update(
        {
            "bindings-TOTAL_FORMS": len(bindings),
            "bindings-INITIAL_FORMS": len(bindings),
            "bindings-MIN_NUM_FORMS": 0,
            "bindings-MAX_NUM_FORMS": 1000,
        }
    )
    for i, b in enumerate(bindings):
        row = {
            "id": b.pk,
            "template": template.pk,
            "channel": b.channel,
            "enabled": "on" if b.enabled else "",
            "account": b.account_id or "",
            "external_template_id": b.external_template_id,
            "params": json.dumps(b.params, ensure_ascii=False),
            "options": json.dumps(b.options, ensure_ascii=False),
            **binding_changes.get(b.channel, {}),
        }
        data.update({f"bindings-{i}-{k}": v for k, v in row.items() if v != ""})
    data.update(changes)
    return data


def test_the_change_page_previews_every_bound_channel_from_the_sample(editor_client):
    template = Template.objects.get(code=TEMPLATE)
    page = editor_client.get(reverse("admin:scenarios_template_change", args=[template.pk])).content.decode()
    assert "心内科李明医生已接诊您的问诊" in page  # rendered from inquiry.accepted's sample data
    assert 'data-channel="wechat_oa_template"' in page and "sandbox-pt_inquiry_0000002" in page
    assert "IQ202611250001" in page
    assert "&quot;doctor_name&quot;: &quot;李明&quot;" in page  # the sample payload, editable


def test_a_template_with_a_missing_variable_is_not_saved(editor_client):
    template = Template.objects.get(code=TEMPLATE)
    url = reverse("admin:scenarios_template_change", args=[template.pk])
    data = change_form_data(
        template,
        body="{{ doctor_nmae }}医生已接诊",
        sample_data={"doctor_name": "李明", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"},
    )
    page = editor_client.post(url, data).content.decode()
    template.refresh_from_db()
    assert "doctor_nmae" not in template.body
    # Said once, in the reader's words.
    assert page.count(missing_variable("body", "doctor_nmae")) == 1 and "is undefined" not in page
    with translation.override("zh-hans"):
        refused = gettext("Not saved: the preview above says what to correct.")
    assert html.escape(refused) in page
    # The preview is of the refused text, says so, and claims no channel passes with it.
    start = page.index('class="nc-preview"')
    panel = page[start : page.index("</div>", start)]
    assert 'id="preview-unsaved"' in panel and "✔" not in panel
    assert 'data-channel="wechat_oa_template"' in panel


def test_the_preview_after_a_refused_save_is_of_what_was_submitted(editor_client):
    template = Template.objects.get(code=TEMPLATE)
    url = reverse("admin:scenarios_template_change", args=[template.pk])
    params = {"thing1": "{{ doctor_name }}", "thing2": "{{ department }}", "character_string3": "订单{{ order_no }}"}
    data = change_form_data(
        template,
        title="新标题{{ doctor_name }}",
        sample_data={"doctor_name": "王五", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"},
        bindings={"wechat_oa_template": {"params": json.dumps(params, ensure_ascii=False)}},
    )
    page = editor_client.post(url, data).content.decode()
    start = page.index('class="nc-preview"')
    panel = page[start : page.index("</div>", start)]
    assert "新标题王五" in panel and "李明" not in panel  # as submitted, from the submitted sample data
    row = re.search(r'data-channel="wechat_oa_template".*?</tr>', panel, re.S).group(0)
    assert "character_string3: not a valid character_string" in row and "✔" not in row


def test_a_template_breaking_a_wechat_parameter_type_is_not_saved_and_the_page_says_why(editor_client):
    template = Template.objects.get(code=TEMPLATE)
    url = reverse("admin:scenarios_template_change", args=[template.pk])
    params = {"thing1": "{{ doctor_name }}", "thing2": "{{ department }}", "character_string3": "订单{{ order_no }}"}
    data = change_form_data(
        template,
        sample_data={"doctor_name": "李明", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"},
        bindings={"wechat_oa_template": {"params": json.dumps(params, ensure_ascii=False)}},
    )
    page = editor_client.post(url, data).content.decode()
    row = re.search(r'<tr class="nc-channel" data-channel="wechat_oa_template".*?</tr>', page, re.S).group(0)
    assert "微信服务号模板消息" in row and "character_string3: not a valid character_string" in row
    assert ChannelBinding.objects.get(template=template, channel="wechat_oa_template").params["character_string3"] == (
        "{{ order_no }}"
    )


def test_a_valid_edit_is_saved_with_its_history(editor_client):
    template = Template.objects.get(code=TEMPLATE)
    url = reverse("admin:scenarios_template_change", args=[template.pk])
    data = change_form_data(
        template,
        title="医生已接诊（新）",
        sample_data={"doctor_name": "李明", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"},
    )
    response = editor_client.post(url, data)
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)
    template.refresh_from_db()
    assert template.title == "医生已接诊（新）"
    data = change_form_data(
        template,
        body=template.body + "。",
        sample_data={"doctor_name": "李明", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"},
    )
    assert editor_client.post(url, data).status_code == 302
    latest = template.history.latest()
    assert latest.history_user.username == "editor"
    assert latest.diff_against(latest.prev_record).changed_fields == ["body"]
    history = editor_client.get(reverse("admin:scenarios_template_history", args=[template.pk])).content.decode()
    assert "editor" in history


def test_the_preview_page_renders_edited_data_and_a_test_send_reports_each_delivery(editor_client, sandbox):
    template = Template.objects.get(code=TEMPLATE)
    Recipient.objects.create(audience="patient", external_id="p-test", wechat_oa_openid="oOA-test-0001")
    TestRecipient.objects.create(audience="patient", external_id="p-test", name="测试患者")
    url = reverse("admin:scenarios_template_preview", args=[template.pk])
    sample = {"doctor_name": "王芳", "department": "儿科", "order_no": "IQ9", "inquiry_id": "9009"}

    preview = editor_client.post(url, {"sample_data": json.dumps(sample), "_preview": "1"}).content.decode()
    assert "儿科王芳医生已接诊您的问诊" in preview

    sent = editor_client.post(
        url,
        {
            "sample_data": json.dumps(sample),
            "external_id": "p-test",
            "channels": ["inbox", "wechat_oa_template"],
            "_test_send": "1",
        },
        follow=True,
    )
    page = sent.content.decode()
    deliveries = list(Delivery.objects.filter(template_code=TEMPLATE).order_by("channel"))
    assert [(d.channel, d.status) for d in deliveries] == [("inbox", "sent"), ("wechat_oa_template", "sent")]
    assert 'id="test-send-results"' in page and page.count('data-status="sent"') == 2
    (call,) = sandbox.calls("/message/template/send")
    assert call["body"]["touser"] == "oOA-test-0001" and call["body"]["data"]["thing1"] == {"value": "王芳"}
    # Marked as a test: in the inbox the person reads, and in the delivery list.
    from inbox.models import InboxMessage

    assert InboxMessage.objects.get(recipient_id="p-test").title.startswith("【测试】")
    deliveries_page = editor_client.get(reverse("admin:channels_delivery_changelist")).content.decode()
    assert deliveries_page.count("<strong>【测试发送】</strong>") == 2


def test_a_test_send_reaches_only_a_test_recipient(editor_client, sandbox):
    template = Template.objects.get(code=TEMPLATE)
    Recipient.objects.create(audience="patient", external_id="p-42", wechat_oa_openid="oOA-p42-0001")
    url = reverse("admin:scenarios_template_preview", args=[template.pk])
    page = editor_client.post(
        url, {"sample_data": "{}", "external_id": "p-42", "channels": ["inbox"], "_test_send": "1"}
    ).content.decode()
    assert "p-42 不是测试人员" in page
    assert not Delivery.objects.exists()


def test_a_verification_code_template_is_never_test_sent_by_sms(editor_client, sandbox):
    template = Template.objects.get(code="dc_point_0000002")
    url = reverse("admin:scenarios_template_preview", args=[template.pk])
    page = editor_client.post(
        url, {"sample_data": "{}", "external_id": "d-1", "channels": ["sms"], "_test_send": "1"}
    ).content.decode()
    assert "POST /api/v1/otp" in page
    assert not Delivery.objects.exists()


def _delivery(template_code, channel, status, *, ago, code="", words=""):
    finished = timezone.now() - ago
    d = Delivery.objects.create(
        channel=channel,
        idempotency_key=f"{template_code}-{channel}-{status}-{ago.total_seconds()}",
        status=status,
        not_before=finished,
        template_code=template_code,
        last_error_code=code,
        last_error_message=words,
    )
    Delivery.objects.filter(pk=d.pk).update(finished_at=finished)
    return d


def test_the_coverage_matrix_shows_each_cells_state(editor_client):
    hour = timedelta(hours=1)
    _delivery(TEMPLATE, "inbox", "sent", ago=2 * hour)
    _delivery(TEMPLATE, "inbox", "sent", ago=30 * hour)  # outside the 24 hours
    _delivery(TEMPLATE, "wechat_oa_template", "sent", ago=5 * hour)
    _delivery(TEMPLATE, "wechat_oa_template", "failed", ago=hour, code="43004", words="require subscribe hint")

    page = editor_client.get(reverse("admin:scenarios_scenario_coverage") + "?domain=inquiry").content.decode()
    row = page.split(f'data-template="{TEMPLATE}"')[1].split("</tr>")[0]
    states = [s.split('"')[0] for s in row.split('data-state="')[1:]]
    # inbox, mini subscribe, OA template, WeCom robot, WeCom app, app push, SMS
    assert states == ["working", "unbound", "failing", "unbound", "unbound", "unbound", "unbound"]
    assert "24 小时 1 条" in row and "43004" in row and "require subscribe hint" in row  # the console is in Chinese
    never = page.split('data-template="dc_inquiry_0000006"')[1].split("</tr>")[0]
    assert 'data-state="never_sent"' in never and "已绑定，未尝试" in never
    assert "yy_order_0000001" not in page  # the domain filter: order scenarios are not shown
    volumes = page.split('id="channel-volumes"')[1].split("</table>")[0]
    assert "50%" in volumes  # the OA template channel: one sent, one failed in 24 hours


def test_a_cell_whose_every_try_was_skipped_is_neither_working_nor_never_tried(editor_client):
    for i in range(3):
        _delivery("dc_inquiry_0000006", "app_push", "skipped", ago=timedelta(minutes=i + 1), code="no_address")

    page = editor_client.get(reverse("admin:scenarios_scenario_coverage") + "?domain=inquiry").content.decode()
    row = page.split('data-template="dc_inquiry_0000006"')[1].split("</tr>")[0]
    states = [s.split('"')[0] for s in row.split('data-state="')[1:]]
    assert states[5] == "skipped_only" and states[0] == "never_sent"  # app push; inbox never tried
    assert "全部 3 条跳过" in row and "无该渠道地址 (no_address)" in row
    assert "24 小时内跳过: 无该渠道地址 (no_address) 3" in row  # the reasons in words, as the deliveries say them
    home = editor_client.get(reverse("admin:index")).content.decode()
    attention = home.split('id="needs-attention"')[1].split("</section>")[0]
    assert "患者预约电话、视频问诊" in attention and "无该渠道地址" in attention


def test_the_home_page_shows_today_per_channel_stuck_deliveries_and_the_next_hour(editor_client, backend, admin_client):
    from tests.factories import paid_event

    _delivery(TEMPLATE, "inbox", "sent", ago=timedelta(minutes=1))
    _delivery(TEMPLATE, "wechat_oa_template", "failed", ago=timedelta(minutes=1), code="43004")
    test = _delivery(TEMPLATE, "wechat_oa_template", "sent", ago=timedelta(minutes=1))
    Delivery.objects.filter(pk=test.pk).update(idempotency_key="test:pt:oa:1")  # a console test send
    stuck = Delivery.objects.create(
        channel="sms", idempotency_key="stuck", status="sending", not_before=timezone.now(), template_code="x"
    )
    Delivery.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(minutes=30))
    soon = (timezone.localtime() + timedelta(minutes=35)).isoformat()
    booked = paid_event(consultation_type="video")
    booked.update(event="inquiry.appointment_booked", idempotency_key="booked-1")
    booked["data"] = {k: booked["data"][k] for k in ("inquiry_id", "order_no", "consultation_type", "patient_name")}
    booked["data"]["appointment_time"] = soon
    assert backend.post("/api/v1/events", booked, format="json").status_code == 202

    page = editor_client.get(reverse("admin:index")).content.decode()
    today = page.split('id="channels-today"')[1].split("</section>")[0]
    oa = today.split('data-channel="wechat_oa_template"')[1].split("</tr>")[0]
    assert "微信服务号模板消息" in oa and "0%" in oa  # the test send is not counted
    assert "100%" in today.split('data-channel="inbox"')[1].split("</tr>")[0]
    assert f"#{stuck.pk}" in page.split('id="stuck-deliveries"')[1].split("</section>")[0]
    reminders = page.split('id="reminders-next-hour"')[1].split("</section>")[0]
    assert "预约问诊即将开始" in reminders or "dc_inquiry_0000004" in reminders or "d-17" in reminders
    # The engineers' tables come last.
    assert re.findall(r'class="app-(\w+) module', page) == ["scenarios", "channels", "inbox", "django_celery_beat"]
    everything = re.findall(r'class="app-(\w+) module', admin_client.get(reverse("admin:index")).content.decode())
    assert everything == ["scenarios", "channels", "inbox", "notifycenter", "auth", "django_celery_beat"]


def test_critical_is_ticked_on_the_change_page_and_saved(editor_client):
    rejected = Template.objects.get(code="dc_prescription_0000002")  # critical in the catalog
    url = reverse("admin:scenarios_template_change", args=[rejected.pk])
    page = editor_client.get(url).content.decode()
    assert re.search(r'<input type="checkbox" name="critical"[^>]*checked', page)
    with translation.override("zh-hans"):
        assert html.escape(str(Template._meta.get_field("critical").help_text)) in page
    template = Template.objects.get(code=TEMPLATE)
    url = reverse("admin:scenarios_template_change", args=[template.pk])
    assert not template.critical
    sample = {"doctor_name": "李明", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"}
    response = editor_client.post(url, change_form_data(template, critical="on", sample_data=sample))
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)
    template.refresh_from_db()
    assert template.critical
    data = change_form_data(template, sample_data=sample)
    del data["critical"]  # an unticked box is not posted
    assert editor_client.post(url, data).status_code == 302
    template.refresh_from_db()
    assert not template.critical


def test_the_first_edit_of_a_catalog_template_lists_its_changed_fields(editor_client):
    from django.core.management import call_command

    # What `make setup` does on a new database (Makefile): the catalog, with its first records.
    call_command("load_catalog", verbosity=0)
    template = Template.objects.get(code=TEMPLATE)
    assert template.history.count() == 1
    url = reverse("admin:scenarios_template_change", args=[template.pk])
    sample = {"doctor_name": "李明", "department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"}
    response = editor_client.post(url, change_form_data(template, title="医生已接诊（改）", sample_data=sample))
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)
    first_edit = template.history.latest()
    assert first_edit.diff_against(first_edit.prev_record).changed_fields == ["title"]
    page = editor_client.get(reverse("admin:scenarios_template_history", args=[template.pk])).content.decode()
    own = page[page.index('id="change-history"') : page.index('class="module child-history"')]  # then its bindings'
    rows = re.findall(r"<tr>\s*<td>.*?</tr>", own, re.S)
    assert len(rows) == 2  # newest first: the edit, then the catalog's row
    cells = re.findall(r"<td>(.*?)</td>", rows[0], re.S)
    assert label("title") in cells[-1] and "医生已接诊（改）" in cells[-1]  # which field, from what to what
    assert cells[-2].strip() == ""  # no reason given: blank, not "None"
    catalog_row = re.findall(r"<td>(.*?)</td>", rows[1], re.S)
    assert catalog_row[-2].strip() == "载入目录"  # the command's reason, in the reader's language


def test_a_broadcast_with_a_missing_variable_is_refused_in_the_readers_words(catalog, admin_client):
    template = Template.objects.get(code=TEMPLATE)
    form = {
        "name": "测试群发",
        "template": template.pk,
        "channels": ["inbox"],
        "importance": "transactional",
        "source": "list",
        "segment_channel": "",
        "data": json.dumps({"department": "心内科", "order_no": "IQ1", "inquiry_id": "9001"}),
        "ids_text": "p-1\n",
    }
    page = admin_client.post(reverse("admin:scenarios_broadcast_add"), form).content.decode()
    assert page.count(missing_variable("body", "doctor_name")) == 1 and "is undefined" not in page


def test_history_records_are_read_only_with_a_clear_title(editor_client, backend, admin_client):
    from tests.factories import paid_event

    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    event = Event.objects.get()
    for c in (editor_client, admin_client):
        page = c.get(reverse("admin:scenarios_event_change", args=[event.pk])).content.decode()
        assert f"<h1>事件 #{event.pk}：" in page
        assert 'name="_save"' not in page and "deletelink" not in page and "修改 事件" not in page
        assert c.post(reverse("admin:scenarios_event_change", args=[event.pk]), {}).status_code == 403
    delivery = Delivery.objects.first()
    page = admin_client.get(reverse("admin:channels_delivery_change", args=[delivery.pk])).content.decode()
    assert f"投递 #{delivery.pk}：" in page and 'name="_save"' not in page


def test_the_timeline_is_in_order_and_in_chinese(editor_client, backend):
    from tests.factories import paid_event

    payload = paid_event(consultation_type="text")
    assert backend.post("/api/v1/events", payload, format="json").status_code == 202
    event = Event.objects.get()
    page = editor_client.get(reverse("admin:scenarios_event_change", args=[event.pk])).content.decode()
    timeline = page.split('class="nc-timeline"')[1].split("</table>")[0]
    whats = re.findall(r"<td>([^<]+)</td>\s*<td>", timeline)
    assert whats[0] == "收到事件"
    assert whats.index("消息已计划") < whats.index("投递已排队")
    for english in ("due ", "no_address)", "event received", "delivery queued", "patient"):
        assert english not in timeline.replace("(no_address)", "")
    assert "到期" in timeline


def test_the_console_links_somewhere_useful_and_credentials_start_blank(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'href="/api/docs/"' in page
    account = ChannelAccount.objects.create(name="a", channel="sms", provider="aliyun")
    form = admin_client.get(reverse("admin:channels_channelaccount_change", args=[account.pk])).content.decode()
    textarea = form.split('name="new_credentials"')[1].split("</textarea>")[0]
    assert "null" not in textarea


def test_the_event_page_shows_the_timeline_and_deliveries_can_be_retried_and_cancelled(editor_client, backend):
    from tests.factories import paid_event

    payload = paid_event(consultation_type="text")
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": "13812345678"}]
    assert backend.post("/api/v1/events", payload, format="json").status_code == 202
    event = Event.objects.get()
    page = editor_client.get(reverse("admin:scenarios_event_change", args=[event.pk])).content.decode()
    for step in ("收到事件", "消息已计划", "投递已排队"):
        assert step in page
    assert "inquiry.paid #" in page
    message = Message.objects.filter(event=event).first()
    assert editor_client.get(reverse("admin:scenarios_message_change", args=[message.pk])).status_code == 200

    failed = Delivery.objects.filter(event_ref=event.pk, channel="sms").first()
    Delivery.objects.filter(pk=failed.pk).update(status=DeliveryStatus.FAILED, last_error_code="isv.X")
    changelist = reverse("admin:channels_delivery_changelist")
    editor_client.post(changelist, {"action": "retry_now", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.status in ("queued", "sending", "sent", "failed") and failed.attempt_count >= 1
    later = Delivery.objects.create(
        channel="inbox", idempotency_key="later", not_before=timezone.now() + timedelta(days=1), template_code="x"
    )
    editor_client.post(changelist, {"action": "cancel", "_selected_action": [later.pk]})
    later.refresh_from_db()
    assert (later.status, later.last_error_code) == ("cancelled", "cancelled_by_operator")


def test_retry_and_cancel_need_their_permissions(catalog, client):
    client.force_login(staff("viewer", "operations viewer"))
    later = Delivery.objects.create(
        channel="inbox", idempotency_key="later", not_before=timezone.now() + timedelta(days=1), template_code="x"
    )
    changelist = reverse("admin:channels_delivery_changelist")
    page = client.get(changelist).content.decode()
    assert 'value="cancel"' not in page and 'value="retry_now"' not in page
    client.post(changelist, {"action": "cancel", "_selected_action": [later.pk]})
    later.refresh_from_db()
    assert later.status == "queued"


def test_the_groups_hold_what_their_work_needs(catalog):
    staff("someone", "operations viewer")

    def perms(group):
        return set(Group.objects.get(name=group).permissions.values_list("codename", flat=True))

    editor, viewer, channel = perms("operations editor"), perms("operations viewer"), perms("channel admin")
    assert {"change_template", "add_channelbinding", "change_scenario", "retry_delivery"} <= editor
    assert {"add_testrecipient", "change_testrecipient"} <= editor  # who may be sent a test
    # broadcasts (群发), the delivery policies' defaults and the inbox (a new scenario's walkthrough met 403)
    assert {"add_broadcast", "cancel_broadcast", "change_audiencepolicy", "change_preferencedefault"} <= editor
    assert {"view_inboxmessage", "view_broadcast", "view_audiencepolicy", "view_preferencedefault"} <= viewer
    assert not {"change_channelaccount", "view_channelaccount"} & editor  # credentials are not theirs
    assert {"view_template", "view_delivery", "view_event"} <= viewer
    assert not any(p.startswith(("add_", "change_", "delete_")) for p in viewer)
    assert {"change_channelaccount", "add_channelaccount", "view_otpcode"} <= channel
    assert "change_template" not in channel


def test_an_editor_opens_the_policies_the_inbox_and_broadcasts(editor_client):
    for name in (
        "channels_preferencedefault_changelist",
        "scenarios_audiencepolicy_changelist",
        "inbox_inboxmessage_changelist",
        "scenarios_broadcast_changelist",
        "scenarios_broadcast_add",
    ):
        assert editor_client.get(reverse(f"admin:{name}")).status_code == 200, name


def test_a_viewer_reads_the_matrix_but_cannot_edit_or_import(catalog, client):
    client.force_login(staff("viewer", "operations viewer"))
    template = Template.objects.get(code=TEMPLATE)
    assert client.get(reverse("admin:scenarios_scenario_coverage")).status_code == 200
    assert client.get(reverse("admin:scenarios_template_change", args=[template.pk])).status_code == 200
    assert client.post(reverse("admin:scenarios_template_change", args=[template.pk]), {}).status_code == 403
    assert client.get(reverse("admin:scenarios_template_import")).status_code == 403
    assert client.get(reverse("admin:scenarios_template_export")).status_code == 200
    account = ChannelAccount.objects.create(name="oa", channel="wechat_oa_template", provider="wechat")
    assert client.post(reverse("admin:channels_channelaccount_change", args=[account.pk]), {}).status_code == 403


def export_all() -> dict[str, str]:
    return {r.__name__: r().export().json for r in RESOURCES}


def test_export_then_import_into_an_empty_system_is_lossless(catalog):
    before = export_all()
    assert len(json.loads(before["RuleResource"])) == Rule.objects.count() > 17
    Rule.objects.all().delete()
    ChannelBinding.objects.all().delete()
    from scenarios.models import PlanStep, RecurringBroadcast

    PlanStep.objects.all().delete()
    RecurringBroadcast.objects.all().delete()
    Template.objects.all().delete()
    Scenario.objects.all().delete()
    LinkTarget.objects.all().delete()

    for resource in RESOURCES:
        dataset = tablib.Dataset().load(before[resource.__name__], format="json")
        dry = resource().import_data(dataset, dry_run=True)
        assert not dry.has_errors() and not dry.has_validation_errors()
        assert not LinkTarget.objects.exists() or resource is not RESOURCES[0]  # a dry run writes nothing
        result = resource().import_data(dataset, dry_run=False)
        assert not result.has_errors() and not result.has_validation_errors(), resource.__name__
    assert export_all() == before

    again = RESOURCES[2]().import_data(tablib.Dataset().load(before["TemplateResource"], format="json"))
    assert again.totals["skip"] == Template.objects.count()  # unchanged rows are left alone


def test_an_import_reports_bad_rows_and_changes_nothing(catalog):
    dataset = tablib.Dataset().load(export_all()["RuleResource"], format="json")
    rows = dataset.dict
    rows[0]["template"] = "no_such_template"
    rows[1]["condition"] = "{not json"
    bad = tablib.Dataset()
    bad.dict = rows
    before = list(Rule.objects.values_list("scenario__code", "code", "template__code").order_by("pk"))
    result = RESOURCES[4]().import_data(bad, dry_run=False, raise_errors=False)
    assert result.has_validation_errors() or result.has_errors()
    messages = json.dumps(
        [str(e.error) for row in result.invalid_rows for e in [row]]
        + [str(err.error) for _, errs in result.row_errors() for err in errs],
        ensure_ascii=False,
    )
    # The cell's error, naming the value and the table, in the reader's words: not import-export's
    # bare "Template matching query does not exist." for the row.
    assert "没有模板 no_such_template" in messages and "matching query" not in messages
    assert any("template" in row.error.message_dict for row in result.invalid_rows)
    assert "不是 JSON" in messages
    assert list(Rule.objects.values_list("scenario__code", "code", "template__code").order_by("pk")) == before


def test_the_admin_import_page_offers_a_dry_run_preview(editor_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    exported = RESOURCES[1]().export()
    rows = exported.dict
    rows[0]["name"] = "改过的名字"
    changed = tablib.Dataset()
    changed.dict = rows
    upload = SimpleUploadedFile("scenarios.json", changed.json.encode(), content_type="application/json")
    page = editor_client.post(
        reverse("admin:scenarios_scenario_import"),
        {"import_file": upload, "format": "2", "resource": "0"},
    )
    text = page.content.decode()
    assert page.status_code == 200
    assert ("改过的名字" in text and 'name="process_import"' in text) or "confirm" in text.lower()
    assert not Scenario.objects.filter(name="改过的名字").exists()  # nothing written before confirming


def test_channel_accounts_admin_never_shows_a_secret(catalog, client):
    client.force_login(staff("channels", "channel admin"))
    account = ChannelAccount.objects.create(
        name="oa",
        channel="wechat_oa_template",
        provider="wechat",
        app_id="wx",
        credentials={"app_secret": "s3cr3t-value-1234"},
    )
    page = client.get(reverse("admin:channels_channelaccount_change", args=[account.pk])).content.decode()
    assert "s3cr3t-value" not in page and "****1234" in page


def test_the_matrix_reads_a_fixed_number_of_queries_however_many_cells_fail(
    editor_client, django_assert_max_num_queries
):
    hour = timedelta(hours=1)
    for template in Template.objects.all():
        for binding in template.bindings.all():
            _delivery(template.code, binding.channel, "failed", ago=hour, code="E1", words=f"{template.code} down")
    # Session, user, permissions, rules, bindings, three delivery aggregates, last errors, volumes:
    # a query per failing cell (35 here) would break this bound.
    with django_assert_max_num_queries(14):
        page = editor_client.get(reverse("admin:scenarios_scenario_coverage")).content.decode()
    assert page.count('data-state="failing"') >= 30
    assert "pt_inquiry_0000002 down" in page


def test_a_new_template_is_checked_against_the_sample_data_typed_with_it(editor_client):
    url = reverse("admin:scenarios_template_add")
    assert editor_client.get(url).status_code == 200
    data = {
        "code": "pt_new_0000001",
        "name": "新模板",
        "audience": "patient",
        "category": "system",
        "title": "您好{{ name }}",
        "body": "欢迎使用。",
        "bindings-TOTAL_FORMS": 1,
        "bindings-INITIAL_FORMS": 0,
        "bindings-MIN_NUM_FORMS": 0,
        "bindings-MAX_NUM_FORMS": 1000,
        "bindings-0-channel": "inbox",
        "bindings-0-enabled": "on",
        "bindings-0-params": "{}",
        "bindings-0-options": "{}",
    }
    refused = editor_client.post(url, {**data, "sample_data": "{}"}).content.decode()
    assert missing_variable("title", "name") in refused and 'id="preview-unsaved"' in refused
    assert not Template.objects.filter(code="pt_new_0000001").exists()
    created = editor_client.post(url, {**data, "sample_data": '{"name": "张三"}'})
    assert created.status_code == 302
    assert Template.objects.get(code="pt_new_0000001").bindings.get().channel == "inbox"


def test_an_inbox_message_sent_counts_as_delivered(editor_client):
    # Written into the person's inbox is in their inbox: no receipt ever comes for it.
    _delivery(TEMPLATE, "inbox", "sent", ago=timedelta(hours=1))
    _delivery(TEMPLATE, "inbox", "read", ago=timedelta(hours=2))
    _delivery(TEMPLATE, "wechat_oa_template", "sent", ago=timedelta(hours=1))  # no receipt yet: not delivered

    page = editor_client.get(reverse("admin:scenarios_scenario_coverage") + "?domain=inquiry").content.decode()
    volumes = page.split('id="channel-volumes"')[1].split("</table>")[0]
    # Channels in order: inbox, mini subscribe, OA template…; each row's rates: success, delivered, read.
    rates = [re.findall(r"(\d+)%", row) for row in volumes.split("<tr><td>")[1:]]
    assert rates[0] == ["100", "100", "50"] and rates[2] == ["100", "0", "0"]
    row = page.split(f'data-template="{TEMPLATE}"')[1].split("</tr>")[0]
    assert "送达 2 · 已读 1" in row


def test_rules_sharing_a_template_each_show_its_last_error(editor_client):
    # inquiry.completed and inquiry.timed_out both tell operations with yy_inquiry_0000001.
    ago = timedelta(minutes=5)
    _delivery("yy_inquiry_0000001", "wecom_robot", "failed", ago=ago, code="93000", words="invalid key")

    page = editor_client.get(reverse("admin:scenarios_scenario_coverage") + "?domain=inquiry").content.decode()
    rows = page.split('data-template="yy_inquiry_0000001"')[1:]
    assert len(rows) == 2
    for row in rows:
        assert 'data-state="failing"' in row.split("</tr>")[0] and "93000" in row.split("</tr>")[0]
