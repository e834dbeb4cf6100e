"""The 17 rows of ../shared/catalog.md, checked against the loaded fixture and sent end to end."""

import io

import pytest
from django.core.management import call_command
from jsonschema import Draft202012Validator

from channels.models import Delivery
from inbox.models import InboxMessage
from scenarios.models import ChannelBinding, LinkTarget, Rule, Scenario, Template
from scenarios.rendering import render_message
from scenarios.services import render_context
from tests.clients import backend_client

pytestmark = pytest.mark.django_db

# (row, event, audience, template, channels, opens)
ROWS = [
    (
        1,
        "inquiry.video_call_started",
        "patient",
        "pt_inquiry_0000004",
        {"inbox", "wechat_mini_subscribe"},
        "im_patient",
    ),
    (2, "inquiry.accepted", "patient", "pt_inquiry_0000002", {"inbox", "wechat_oa_template"}, "im_patient"),
    (3, "inquiry.appointment_booked", "doctor", "dc_inquiry_0000006", {"inbox", "app_push"}, "im_doctor"),
    (4, "inquiry.declined", "patient", "pt_inquiry_0000007", {"wechat_oa_template", "inbox"}, "inquiry_detail"),
    (5, "inquiry.completed", "operations", "yy_inquiry_0000001", {"wecom_robot"}, "inquiry_order_admin"),
    (6, "inquiry.timed_out", "doctor", "dc_inquiry_0000003", {"inbox"}, "im_doctor"),
    (6, "inquiry.timed_out", "operations", "yy_inquiry_0000001", {"wecom_robot"}, "inquiry_order_admin"),
    (7, "inquiry.paid", "doctor", "dc_inquiry_0000001", {"inbox", "app_push", "sms"}, "doctor_app"),
    (7, "inquiry.paid", "patient", "pt_inquiry_0000001", {"inbox"}, "inquiry_detail"),
    (7, "inquiry.paid", "operations", "yy_inquiry_0000002", {"wecom_robot"}, "inquiry_order_admin"),
    (
        8,
        "inquiry.appointment_booked",
        "doctor",
        "dc_inquiry_0000004",
        {"inbox", "app_push", "wechat_mini_subscribe"},
        "im_doctor",
    ),
    (9, "order.refund_requested", "operations", "yy_order_0000001", {"wecom_robot"}, "after_sales_list"),
    (10, "order.refund_approved", "doctor", "dc_inquiry_0000005", {"inbox", "app_push"}, "inquiry_detail"),
    (
        11,
        "prescription.submitted",
        "patient",
        "pt_prescription_0000001",
        {"inbox", "wechat_oa_template"},
        "prescription_detail",
    ),
    (
        11,
        "prescription.submitted",
        "pharmacist",
        "ys_prescription_0000001",
        {"inbox", "app_push"},
        "prescription_detail",
    ),
    (12, "prescription.approved", "doctor", "dc_prescription_0000001", {"inbox", "app_push"}, "prescription_detail"),
    (13, "prescription.rejected", "doctor", "dc_prescription_0000002", {"inbox", "app_push"}, "prescription_detail"),
    (14, "order.refunded", "operations", "yy_order_0000001", {"wecom_robot"}, "after_sales_list"),
    (15, "point.withdrawal_requested", "doctor", "dc_point_0000002", {"sms"}, None),
    (16, "point.withdrawal_succeeded", "operations", "yy_point_0000001", {"wecom_robot"}, None),
    (17, "point.changed", "doctor", "dc_point_0000001", {"inbox", "app_push"}, "points_page"),
]


def test_loading_the_catalog_twice_changes_nothing(db):
    call_command("loaddata", "catalog", verbosity=0)
    counts = [m.objects.count() for m in (Scenario, Rule, Template, ChannelBinding, LinkTarget)]
    call_command("loaddata", "catalog", verbosity=0)

    assert [m.objects.count() for m in (Scenario, Rule, Template, ChannelBinding, LinkTarget)] == counts
    assert {row[0] for row in ROWS} == set(range(1, 18))


def test_load_catalog_records_what_it_added_or_changed_and_keeps_creation_times(db):
    call_command("load_catalog", verbosity=0)
    template = Template.objects.get(code="dc_inquiry_0000001")
    first = template.history.get()
    assert (first.history_type, first.history_change_reason) == ("+", "catalog loaded")
    assert all(m.history.count() == m.objects.count() > 0 for m in (Scenario, Rule, Template, ChannelBinding))
    created, updated = template.created_at, template.updated_at

    call_command("load_catalog", verbosity=0)  # nothing changed: nothing recorded, times kept
    template.refresh_from_db()
    assert template.history.count() == 1
    assert (template.created_at, template.updated_at) == (created, updated)

    Template.objects.filter(pk=template.pk).update(title="改过的标题")  # an edit the reload undoes
    call_command("load_catalog", verbosity=0)
    template.refresh_from_db()
    assert template.title != "改过的标题"
    assert template.created_at == created and template.updated_at > updated
    assert [(h.history_type, h.history_change_reason) for h in template.history.all()] == [
        ("~", "catalog loaded"),
        ("+", "catalog loaded"),
    ]
    assert sum(m.history.count() for m in (Scenario, Rule, ChannelBinding)) == sum(
        m.objects.count() for m in (Scenario, Rule, ChannelBinding)
    )  # only the changed row got a second record


@pytest.mark.parametrize(("row", "event", "audience", "template", "channels", "opens"), ROWS)
def test_each_row_is_in_the_catalog(catalog, row, event, audience, template, channels, opens):
    rule = Rule.objects.get(scenario__code=event, audience=audience, template__code=template)

    assert rule.enabled
    bound = set(rule.template.bindings.filter(enabled=True).values_list("channel", flat=True))
    assert bound == channels
    assert (rule.template.link.code if rule.template.link else None) == opens


def test_conditional_and_timed_rows_are_data(catalog):
    ops = Rule.objects.get(scenario__code="inquiry.paid", audience="operations")
    validator = Draft202012Validator(ops.condition)
    assert validator.is_valid({"consultation_type": "video"})
    assert validator.is_valid({"consultation_type": "phone"})
    assert not validator.is_valid({"consultation_type": "text"})

    before = Rule.objects.get(template__code="dc_inquiry_0000004")
    after = Rule.objects.get(template__code="dc_inquiry_0000006")
    assert (before.anchor_field, before.offset_minutes) == ("appointment_time", -5)
    assert (after.anchor_field, after.offset_minutes) == ("appointment_time", 10)
    assert "inquiry.video_call_started" in after.cancel_on


@pytest.mark.parametrize("code", sorted({row[1] for row in ROWS}))
def test_each_sample_payload_is_valid_and_every_template_renders_from_it(catalog, code):
    scenario = Scenario.objects.get(code=code)
    assert list(Draft202012Validator(scenario.data_schema).iter_errors(scenario.sample_data)) == []

    for rule in scenario.rules.select_related("template", "template__link"):
        rendered = render_message(
            template=rule.template,
            bindings=rule.template.bindings.all(),
            context=render_context(rule.template, scenario.sample_data),
        )
        assert rendered["title"] and rendered["body"]
        assert "{{" not in rendered["body"]


# What each audience's link may open: its own apps and pages, never another audience's.
OWN_FORMS = {
    "patient": {
        "mini_program": "/pages/",
        "h5": "https://m.hospital.example/",
        "app": "hospitalpatient://",
    },
    "doctor": {"app": "hospitaldoctor://"},
    "pharmacist": {"app": "hospitaldoctor://"},
    "operations": {"h5": "https://admin.hospital.example/"},
}


def test_every_rule_s_link_opens_the_recipient_s_own_app_or_page(catalog):
    """Walks every catalog rule and plan step: each rendered link has only the forms the
    recipient's audience uses, each pointing at that audience's app or pages."""
    from scenarios.models import PlanStep

    templates = [r.template for r in Rule.objects.select_related("template__link", "scenario")]
    templates += [s.template for s in PlanStep.objects.select_related("template__link")]
    checked = 0
    for template in templates:
        if template.link is None:
            continue
        scenario = template.rules.select_related("scenario").first()
        data = scenario.scenario.sample_data if scenario else {}
        link = render_message(template=template, bindings=[], context=render_context(template, data))["link"]
        forms = {k: v for k, v in link.items() if k in ("mini_program", "h5", "app")}
        own = OWN_FORMS[template.audience]
        assert forms, f"{template.code} ({template.audience}) opens nothing"
        for platform, url in forms.items():
            assert platform in own, f"{template.code} ({template.audience}) has a {platform} link: {url}"
            assert url.startswith(own[platform]), f"{template.code} ({template.audience}) opens {url}"
        checked += 1
    assert checked >= 17


def test_one_page_opens_each_audience_s_own_app(catalog):
    """The consultation detail page is shared by patient and doctor templates; each opens its own app."""
    patient = Template.objects.get(code="pt_inquiry_0000007")
    doctor = Template.objects.get(code="dc_inquiry_0000005")
    assert patient.link_id == doctor.link_id
    from scenarios.rendering import render_link

    def render(template):
        return render_link(template.link, {"inquiry_id": "9001"}, audience=template.audience)

    assert render(patient)["app"] == "hospitalpatient://inquiry/detail?inquiryId=9001"
    assert render(doctor) == {
        "target": "inquiry_detail",
        "route": "inquiry_detail",
        "params": {"inquiry_id": "9001"},
        "app": "hospitaldoctor://inquiry/detail?inquiryId=9001",
    }


@pytest.mark.django_db(transaction=True)
def test_every_scenario_reaches_every_built_channel_over_http(catalog, backend, fake_providers):
    from channels.models import SubscribeConsent

    call_command("bootstrap_local", stdout=io.StringIO())  # the sandbox accounts `make run` makes
    people = {
        "patient": [{"id": "p-42", "wechat_oa_openid": "oOA-p42-0001", "wechat_mini_openid": "oMini-p42-0001"}],
        "doctor": [
            {
                "id": "d-17",
                "wechat_mini_openid": "oMini-d17-0001",
                "push_registration_ids": ["1a0018970aa"],
                "phone": "13812345678",
            }
        ],
        "pharmacist": [{"id": "ph-3", "push_registration_ids": ["1b0018970bb"]}],
    }
    backend.put("/api/v1/recipients/patient/p-42", {"wechat_mini_openid": "oMini-p42-0001"}, format="json")
    backend.post(
        "/api/v1/recipients/patient/p-42/subscriptions",
        {"template_ids": ["sandbox-pt_inquiry_0000004", "sandbox-pt_questionnaire_0000001"]},
        format="json",
    )
    for scenario in Scenario.objects.exclude(code="point.withdrawal_requested"):  # row 15: below
        response = backend.post(
            "/api/v1/events",
            {
                "event": scenario.code,
                "idempotency_key": f"sample-{scenario.code}",
                "data": scenario.sample_data,
                "recipients": people,
            },
            format="json",
        )
        assert response.status_code == 202, (scenario.code, response.json())
    withdrawal = Scenario.objects.get(code="point.withdrawal_requested")
    plain = backend.post(
        "/api/v1/events",
        {"event": withdrawal.code, "idempotency_key": "plain-withdrawal", "data": withdrawal.sample_data},
        format="json",
    )
    assert (plain.status_code, plain.json()["code"]) == (400, "use_otp_endpoint")
    otp = backend_client(client="his", scopes=("otp",)).post(
        "/api/v1/otp",
        {"phone": "13812345678", "purpose": withdrawal.code, "data": withdrawal.sample_data},
        format="json",
    )
    assert otp.status_code == 201, otp.json()

    by_channel: dict[str, set] = {}
    for channel, status, code in Delivery.objects.values_list("channel", "status", "last_error_code"):
        by_channel.setdefault(channel, set()).add((status, code))
    assert by_channel["inbox"] == {("sent", "")}
    assert by_channel["wechat_oa_template"] == {("sent", "")}
    assert by_channel["wecom_robot"] == {("sent", "")}
    assert by_channel["wechat_mini_subscribe"] == {("sent", "")}  # row 1 and the questionnaire, with consents
    assert set(SubscribeConsent.objects.values_list("remaining", flat=True)) == {0}
    assert by_channel["app_push"] == {("sent", "")}  # doctors' and the pharmacist's apps, through JPush
    # Row 7's SMS to the doctor goes out through Aliyun, and so does row 15's code, asked for as
    # the backend does, through POST /api/v1/otp (a plain event for it is refused).
    assert by_channel["sms"] == {("sent", "")}
    assert len(fake_providers.calls("/v3/push")) == Delivery.objects.filter(channel="app_push").count()
    # Rows 2, 4 and 11 bind the official account, and so do the questionnaire and membership
    # (their timed reminders are not due yet).
    assert len(fake_providers.calls("/message/template/send")) == 5
    assert InboxMessage.objects.filter(audience="pharmacist", recipient_id="ph-3").exists()


def test_a_questionnaire_is_reminded_24_hours_later_unless_submitted(catalog, backend):
    from datetime import timedelta

    from django.utils import timezone

    from scenarios.models import Message

    assigned = timezone.now().replace(microsecond=0)
    data = dict(Scenario.objects.get(code="questionnaire.assigned").sample_data, assigned_at=assigned.isoformat())
    answer = backend.post(
        "/api/v1/events",
        {"event": "questionnaire.assigned", "idempotency_key": "q1", "data": data, "recipients": {"patient": ["p-42"]}},
        format="json",
    )
    assert answer.status_code == 202, answer.json()
    reminder = Message.objects.get(template__code="pt_questionnaire_0000002")
    assert (reminder.status, reminder.due_at) == ("scheduled", assigned + timedelta(hours=24))
    now = set(Delivery.objects.values_list("template_code", "channel"))
    assert now == {("pt_questionnaire_0000001", c) for c in ("inbox", "wechat_mini_subscribe", "wechat_oa_template")}

    submitted = backend.post(
        "/api/v1/events",
        {
            "event": "questionnaire.submitted",
            "idempotency_key": "q1-done",
            "data": {"questionnaire_id": data["questionnaire_id"]},
        },
        format="json",
    )
    assert submitted.status_code == 202, submitted.json()
    reminder.refresh_from_db()
    assert reminder.status == "cancelled"


def test_membership_reminders_move_with_a_renewal(catalog, backend):
    from datetime import timedelta

    from django.utils import timezone

    from scenarios.models import Message

    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    data = dict(Scenario.objects.get(code="membership.activated").sample_data, expires_at=expires.isoformat())
    people = {"patient": [{"id": "p-42", "phone": "13812345678"}]}
    assert (
        backend.post(
            "/api/v1/events",
            {"event": "membership.activated", "idempotency_key": "m1", "data": data, "recipients": people},
            format="json",
        ).status_code
        == 202
    )
    planned = dict(Message.objects.filter(status="scheduled").values_list("template__code", "due_at"))
    assert planned == {"pt_membership_0000002": expires - timedelta(days=7), "pt_membership_0000003": expires}

    renewed_until = expires + timedelta(days=365)
    renewal = dict(data, expires_at=renewed_until.isoformat())
    assert (
        backend.post(
            "/api/v1/events",
            {"event": "membership.renewed", "idempotency_key": "m1-renew", "data": renewal, "recipients": people},
            format="json",
        ).status_code
        == 202
    )
    planned = dict(Message.objects.filter(status="scheduled").values_list("template__code", "due_at"))
    assert planned == {
        "pt_membership_0000002": renewed_until - timedelta(days=7),
        "pt_membership_0000003": renewed_until,
    }
    assert Message.objects.filter(status="cancelled").count() == 2
