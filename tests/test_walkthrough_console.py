"""What a walkthrough of the console and the API found (session 12), each fixed and proven here."""

import re

import pytest
from django.urls import reverse

from channels.models import ChannelAccount, Delivery, DeliveryStatus, ProviderReceipt, TokenRefresh
from channels.timeline import delivery_progress
from notifycenter.models import ApiKey, WebhookDelivery, WebhookEndpoint
from tests.clients import backend_client
from tests.factories import paid_event

pytestmark = pytest.mark.django_db


def test_an_undelivered_receipt_leaves_the_providers_code_and_words_on_the_delivery(catalog, backend):
    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    delivery = Delivery.objects.filter(channel="inbox").first()
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT)

    outcome = delivery_progress(
        delivery_id=delivery.pk,
        status=DeliveryStatus.UNDELIVERED,
        at=None,
        source="receipt",
        code="MK:0001",
        detail="空号",
    )
    delivery.refresh_from_db()
    assert outcome == "applied"
    assert (delivery.status, delivery.last_error_code, delivery.last_error_message) == (
        "undelivered",
        "MK:0001",
        "空号",
    )

    # A later delivered (the provider tried again) moves it on and clears them.
    delivery_progress(delivery_id=delivery.pk, status=DeliveryStatus.DELIVERED, at=None, source="receipt")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error_code, delivery.last_error_message) == ("delivered", "", "")


def test_a_webhook_url_with_a_user_name_or_password_is_refused(db, admin_client):
    api = backend_client(client="his", scopes=("webhooks",))
    for url in ("https://user:pw@his.example/hook", "https://user@his.example/hook"):
        answer = api.post(
            "/api/v1/webhooks", {"url": url, "secret": "s" * 16, "events": ["delivery.sent"]}, format="json"
        )
        assert answer.status_code == 400, answer.content
        assert "url" in answer.json()["fields"]
    assert (
        api.post(
            "/api/v1/webhooks",
            {"url": "https://his.example/hook", "secret": "s" * 16, "events": ["delivery.sent"]},
            format="json",
        ).status_code
        == 201
    )

    page = admin_client.post(
        reverse("admin:notifycenter_webhookendpoint_add"),
        {"client": "his", "url": "https://user:pw@his.example/x", "events": ["delivery.sent"], "secret": "s" * 16},
    )
    assert page.status_code == 200  # the form again, with the error
    assert "网址中不要写用户名或密码" in page.content.decode()
    assert not WebhookEndpoint.objects.filter(url__contains="user:pw").exists()


def test_an_api_keys_scopes_are_boxes_of_known_scopes(db, admin_client):
    key, _raw = ApiKey.generate(client="his", name="main", scopes=["events"])
    url = reverse("admin:notifycenter_apikey_change", args=[key.pk])
    page = admin_client.get(url).content.decode()
    assert 'type="checkbox" name="scopes" value="webhooks"' in page
    form = {
        "client": "his",
        "name": "main",
        "scopes": ["events", "bogus"],
        "rate_limit_per_minute": 60,
        "is_active": "on",
    }
    assert admin_client.post(url, form).status_code == 200  # refused: bogus is no scope
    key.refresh_from_db()
    assert key.scopes == ["events"]
    form["scopes"] = ["events", "webhooks"]
    assert admin_client.post(url, form).status_code == 302
    key.refresh_from_db()
    assert key.scopes == ["events", "webhooks"]


def test_console_titles_and_columns_in_words_and_china_time(db, admin_client):
    account = ChannelAccount.objects.create(name="短信主账号", channel="sms", provider="aliyun")
    refresh = TokenRefresh.objects.create(account=account, reason="check", ok=True, at="2026-11-30T20:57:30Z")
    page = admin_client.get(reverse("admin:channels_tokenrefresh_change", args=[refresh.pk])).content.decode()
    title = re.search(r"<h2>(.*?)</h2>", page, re.S) or re.search(r"<title>(.*?)</title>", page, re.S)
    assert "短信主账号" in page and "2026-12-01 04:57:30" in page, title.group(1) if title else page[:500]
    assert "20:57:30" not in page

    receipt = ProviderReceipt.objects.create(
        provider="aliyun", provider_message_id="952526602^0", status="delivered", outcome="applied"
    )
    page = admin_client.get(reverse("admin:channels_providerreceipt_change", args=[receipt.pk])).content.decode()
    assert "952526602^0 已送达" in page  # the title: the status in words
    assert re.search(r"<div class=\"readonly\">\s*delivered\s*</div>", page) is None  # no raw status field

    endpoint = WebhookEndpoint.objects.create(client="his", url="https://his.example/h", events=["delivery.sent"])
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id="evt_1",
        event="delivery.sent",
        subject="d:1",
        payload={},
        status="delivered",
        next_try_at="2026-11-30T20:39:00Z",
    )
    page = admin_client.get(reverse("admin:notifycenter_webhookdelivery_changelist")).content.decode()
    assert "已交给服务商 (delivery.sent)" in page  # the event in words, in the column and the filter
    assert "04:39" not in page  # a delivered one has no next try


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_path_answers_the_apis_json_404_with_debug_on_too(db, client, settings, debug):
    settings.DEBUG = debug  # make run's setting: Django would answer its HTML page
    for method, path in (("get", "/api/v1/events/abc"), ("post", "/api/v1/no-such-thing"), ("get", "/api/v1/")):
        answer = getattr(client, method)(path, HTTP_HOST="127.0.0.1")
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer["Content-Type"].startswith("application/json"), path
        assert answer.json()["code"] == "not_found"


def test_a_history_page_shows_values_as_the_console_does(catalog, admin_client):
    from scenarios.models import Template

    template = Template.objects.exclude(link=None).filter(critical=False).first()
    template.save()  # a first record
    template.link, template.critical = None, True
    template.save()
    page = admin_client.get(reverse("admin:scenarios_template_history", args=[template.pk])).content.decode()
    assert "pk=None" not in page and "Deleted" not in page  # an empty reference: "—"
    assert re.search(r"<strong>[^<]*:</strong>\s*否\s*&nbsp;&rarr;&nbsp;&nbsp;是", page)  # yes/no in words
    assert '<th scope="col">变更内容</th>' in page  # the column header "Changes", translated


def test_the_openapi_broadcast_example_is_accepted_as_copied(catalog):
    from scenarios.apis_broadcasts import EXAMPLE

    api = backend_client(client="his", scopes=("events",))
    answer = api.post("/api/v1/broadcasts", EXAMPLE, format="json")
    assert answer.status_code == 202, answer.content


def test_an_export_is_named_after_the_consoles_day(catalog, admin_client, settings):
    from datetime import datetime
    from unittest import mock
    from zoneinfo import ZoneInfo

    # 23:30 UTC on 11-30 is 07:30 on 12-01 in Shanghai.
    late = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC"))
    with mock.patch("django.utils.timezone.now", return_value=late):
        answer = admin_client.post(
            reverse("admin:scenarios_template_export"), {"format": "0", "templateresource_code": "on"}
        )
    assert answer.status_code == 200, answer.content[:300]
    assert "Template-2026-12-01.csv" in answer["Content-Disposition"]


def test_celery_beats_pages_speak_the_consoles_language(db, admin_client):
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    crontab = CrontabSchedule.objects.create(minute="30", hour="9", day_of_week="1", timezone="Asia/Shanghai")
    every = IntervalSchedule.objects.create(every=10, period="seconds")
    PeriodicTask.objects.create(name="每日提醒", task="scenarios.tasks.x", interval=every)

    page = admin_client.get(reverse("admin:django_celery_beat_crontabschedule_change", args=[crontab.pk])).content
    page = page.decode()
    assert "在 09:30, 仅在 星期一 Asia/Shanghai" in page  # cron_descriptor in Chinese, day names too
    assert "At 09:30" not in page and "Task Name" not in page and "Human readable" not in page
    assert "默认为UTC" not in page  # the time zone's default is the system's, Asia/Shanghai
    tasks = admin_client.get(reverse("admin:django_celery_beat_periodictask_changelist")).content.decode()
    assert "Scheduler" not in tasks and "Task Name" not in tasks
    assert "以 Celery 任务" in tasks


def test_the_export_page_names_fields_in_the_consoles_language(catalog, admin_client):
    page = admin_client.get(reverse("admin:scenarios_template_export")).content.decode()
    assert "全选" in page  # "Select all"
    assert "Is Verification Code" not in page
    assert "验证码 (is_verification_code)" in page  # the model's field name, the file's column beside it


def test_a_bindings_name_says_its_channel_in_the_consoles_words(catalog):
    """Inline rows and history pages name a binding by its __str__: the channel in words, not its
    code (`pt_inquiry_0000002 → 站内信`, not `→ inbox`)."""
    from django.utils import translation

    from scenarios.models import ChannelBinding

    binding = ChannelBinding.objects.filter(channel="inbox").select_related("template").first()
    with translation.override("zh-hans"):
        assert str(binding) == f"{binding.template.code} → 站内信"
