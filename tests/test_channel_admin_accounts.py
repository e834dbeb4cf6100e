"""The channel admin (渠道管理员) connecting the hospital's real provider accounts in the console:
credentials by the names each provider's console gives them, merged when one is rotated, never
shown back; the default moved from one account to another in one save; the callback URL to paste
into the provider's console; a disabled account's waiting deliveries; the providers' codes in words."""

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse
from django.utils import translation

from channels.admin import ChannelAccountForm, check_words
from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from channels.tests.helpers import queued, sandbox_account
from channels.wording import provider_words, reason_label
from notifycenter.groups import groups_sync

pytestmark = pytest.mark.django_db

ALIYUN = {
    "name": "阿里云短信",
    "channel": "sms",
    "provider": "aliyun",
    "sandbox": False,
    "base_url": "https://dysmsapi.aliyuncs.com",
    "app_id": "LTAI5tExampleKeyId",
    "credentials": {"access_key_secret": "aliyun-secret-0001", "callback_token": "cb-token-7f3a9d2e"},
    "options": {"sign_name": "互联网医院"},
}


@pytest.fixture
def channel_admin(client, db):
    """A console user in the channel admin group, reading the console in English (the msgids)."""
    groups_sync(Group, Permission)
    user = User.objects.create_user("chan", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="channel admin"))
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    return client


def posted(account: ChannelAccount, **changes) -> dict:
    """The change form as the browser posts it: every field as shown, credentials left blank."""
    data = {
        "name": account.name,
        "channel": account.channel,
        "provider": account.provider,
        "is_default": "on" if account.is_default else "",
        "enabled": "on" if account.enabled else "",
        "sandbox": "on" if account.sandbox else "",
        "base_url": account.base_url,
        "app_id": account.app_id,
        "options": json.dumps(account.options, ensure_ascii=False),
        # as the page sends it (the field's default is a callable: Django compares with this)
        "initial-options": json.dumps(account.options, ensure_ascii=False),
        "rate_limit_per_minute": account.rate_limit_per_minute or "",
        "weight": account.weight,
        "secondary": account.secondary_id or "",
        "new_credentials": "",
        "_continue": "1",
    }
    data.update({k: (json.dumps(v) if k == "new_credentials" else v) for k, v in changes.items()})
    return {k: v for k, v in data.items() if v not in ("", None) or k in ("new_credentials", "base_url")}


def change(client, account, **changes):
    url = reverse("admin:channels_channelaccount_change", args=[account.pk])
    return client.post(url, posted(account, **changes), follow=True)


def form_errors(**data) -> dict:
    base = {"name": "x", "enabled": True, "weight": 0, "options": "{}"}
    with translation.override("en"):
        form = ChannelAccountForm(data={**base, **data})
        form.is_valid()
        return {k: [str(e) for e in v] for k, v in form.errors.items()}


def test_rotating_one_secret_keeps_the_other_credentials(channel_admin):
    account = ChannelAccount.objects.create(**ALIYUN)
    page = change(channel_admin, account, new_credentials={"access_key_secret": "aliyun-secret-0002"})
    assert page.status_code == 200 and not page.context["adminform"].form.errors
    account.refresh_from_db()
    # Before: the typed object replaced them all, and the callbacks' token was gone with it.
    assert account.credentials == {"access_key_secret": "aliyun-secret-0002", "callback_token": "cb-token-7f3a9d2e"}
    text = page.content.decode()
    assert "aliyun-secret-0002" not in text and "cb-token-7f3a9d2e" not in text
    assert "****0002" in text


def test_null_removes_one_credential_and_other_fields_keep_them_all(channel_admin):
    account = ChannelAccount.objects.create(**ALIYUN)
    change(channel_admin, account, rate_limit_per_minute=600)
    account.refresh_from_db()
    assert account.rate_limit_per_minute == 600 and account.credentials == ALIYUN["credentials"]
    change(channel_admin, account, new_credentials={"callback_token": None})
    account.refresh_from_db()
    assert account.credentials == {"access_key_secret": "aliyun-secret-0001"}


def test_credentials_are_checked_by_the_names_the_provider_takes():
    wrong = form_errors(
        channel="wechat_oa_template", provider="wechat", app_id="wx1", new_credentials='{"AppSecret": "s"}'
    )
    assert wrong["new_credentials"] == [
        "WeChat takes no credential AppSecret; it takes app_secret, token, encoding_aes_key."
    ]
    assert form_errors(channel="sms", provider="tencent", app_id="1400", new_credentials='{"app_secret": "s"}')
    token = form_errors(
        channel="wechat_oa_template", provider="wechat", sandbox=True, new_credentials='{"token": "a b"}'
    )
    assert token["new_credentials"] == ["token: 3 to 32 letters or digits, as the WeChat console takes it."]
    aes = form_errors(
        channel="wechat_oa_template", provider="wechat", sandbox=True, new_credentials='{"encoding_aes_key": "short"}'
    )
    assert aes["new_credentials"] == ["encoding_aes_key: 43 letters or digits, as the WeChat console gives it."]


def test_a_real_account_needs_what_its_provider_needs_to_send():
    sms = form_errors(channel="sms", provider="aliyun", new_credentials='{"callback_token": "t"}')
    assert sms == {
        "new_credentials": ["A real account needs access_key_secret."],
        "app_id": ["A real account needs its app id (see the help below)."],
        "options": ['An SMS account needs its signature: {"sign_name": "…"}.'],
    }
    app = form_errors(channel="wecom_app", provider="wecom", app_id="ww1", new_credentials='{"corp_secret": "s"}')
    assert app == {"options": ['A WeCom app needs its AgentId: {"agentid": 1000002}.']}
    # A sandbox account is for trying things: the fake providers take anything.
    assert form_errors(channel="wecom_app", provider="wecom", sandbox=True) == {}


def test_a_robot_key_is_taken_from_the_webhook_address_the_wecom_console_shows(channel_admin):
    url = reverse("admin:channels_channelaccount_add")
    hook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
    account = ChannelAccount(name="值班群", channel="wecom_robot", provider="wecom", sandbox=False)
    channel_admin.post(url, posted(account, new_credentials={"robot_key": hook}))
    assert ChannelAccount.objects.get(name="值班群").credentials == {
        "robot_key": "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
    }


def test_the_provider_must_send_the_channel_and_a_sandbox_account_has_no_base_url():
    assert form_errors(channel="wecom_robot", provider="aliyun", sandbox=True) == {
        "provider": ["WeCom group robot is sent by WeCom."]
    }
    assert form_errors(channel="sms", provider="aliyun", sandbox=True, base_url="http://127.0.0.1:8501/aliyun") == {
        "base_url": ["A sandbox account sends to the fake provider server, not here: untick sandbox to use this URL."]
    }


def test_the_secondary_sends_the_same_channel_and_is_not_the_account_itself(channel_admin):
    account = ChannelAccount.objects.create(**ALIYUN)
    robot = sandbox_account("robot")
    page = change(channel_admin, account, secondary=robot.pk)
    assert page.context["adminform"].form.errors == {
        "secondary": ["The account to fail over to must send the same channel."]
    }
    page = change(channel_admin, account, secondary=account.pk)
    assert page.context["adminform"].form.errors == {"secondary": ["An account cannot fail over to itself."]}
    tencent = sandbox_account("tencent", is_default=False)
    change(channel_admin, account, secondary=tencent.pk)
    account.refresh_from_db()
    assert account.secondary == tencent


def test_making_an_account_the_default_takes_over_from_the_old_one_in_one_save(channel_admin):
    ChannelAccount.objects.create(**{**ALIYUN, "is_default": True})
    new = sandbox_account("tencent", is_default=False)
    page = change(channel_admin, new, is_default="on")
    # Before: 'Constraint "one_default_account_per_channel" is violated.', and unticking the old
    # one first left the channel with no default account in between.
    assert not page.context["adminform"].form.errors
    assert "“阿里云短信” is no longer the default for SMS." in page.content.decode()
    assert list(ChannelAccount.objects.filter(channel="sms", is_default=True)) == [new]


def test_a_changed_secret_clears_the_last_connection_test(channel_admin):
    account = ChannelAccount.objects.create(**ALIYUN, check_ok=True, check_message="signature 互联网医院 approved")
    change(channel_admin, account, weight=5)
    account.refresh_from_db()
    assert account.check_ok is True  # nothing the test depends on changed
    change(channel_admin, account, new_credentials={"access_key_secret": "aliyun-secret-0002"})
    account.refresh_from_db()
    assert (account.check_ok, account.check_message, account.checked_at) == (None, "", None)


def test_the_change_page_says_which_callback_url_to_paste_without_the_token(channel_admin):
    account = ChannelAccount.objects.create(**ALIYUN)
    page = channel_admin.get(reverse("admin:channels_channelaccount_change", args=[account.pk])).content.decode()
    box = page.split('id="callback-setup"')[1].split("</fieldset>")[0]
    assert f"http://testserver/api/v1/callbacks/aliyun/{account.pk}?token=&lt;callback_token&gt;" in box
    assert "****9d2e" in box and "cb-token-7f3a9d2e" not in page
    oa = ChannelAccount.objects.create(
        name="服务号", channel="wechat_oa_template", provider="wechat", app_id="wx1", credentials={"app_secret": "s"}
    )
    page = channel_admin.get(reverse("admin:channels_channelaccount_change", args=[oa.pk])).content.decode()
    box = page.split('id="callback-setup"')[1].split("</fieldset>")[0]
    assert f"http://testserver/api/v1/callbacks/wechat/{oa.pk}" in box
    assert "No token stored yet" in box
    robot = sandbox_account("robot")
    page = channel_admin.get(reverse("admin:channels_channelaccount_change", args=[robot.pk])).content.decode()
    assert 'id="callback-setup"' not in page  # a robot reports nothing back


def test_disabling_an_account_says_where_its_waiting_deliveries_go(channel_admin):
    robot = sandbox_account("robot")
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    waiting = queued("wecom_robot", ops, account=robot)
    assert waiting.status == DeliveryStatus.QUEUED
    page = change(channel_admin, robot, enabled="")
    text = page.content.decode()
    assert "1 deliveries waiting on “robot” go through the channel's account of now" in text
    assert f"account__id__exact={robot.pk}" in text
    listing = channel_admin.get(
        reverse("admin:channels_delivery_changelist") + f"?account__id__exact={robot.pk}&status__in=queued"
    )
    assert listing.status_code == 200 and "?_changelist_filters" in listing.content.decode()


def test_a_providers_code_is_said_in_words_for_its_channel():
    with translation.override("en"):
        assert reason_label("isv.BLACK_KEY_CONTROL_LIMIT") == (
            "the number is on the blacklist (unsubscribed or complained) (isv.BLACK_KEY_CONTROL_LIMIT)"
        )
        assert reason_label("40037") == "invalid template id: not in this account's templates (40037)"
        assert provider_words("45009", "wecom_robot") == "over the robot's 20 messages a minute"
        assert provider_words("45009", "wechat_oa_template") == "today's call quota is used up"
        assert reason_label("no_address") == "no address on this channel (no_address)"
        assert reason_label("some.unknown.code") == "some.unknown.code"
        failed = ChannelAccount(channel="wechat_oa_template", check_ok=False, check_message="40164: invalid ip 1.2.3.4")
        assert check_words(failed) == (
            "40164: invalid ip 1.2.3.4 — this server's IP is not on the account's IP whitelist"
        )


@pytest.mark.django_db(transaction=True)
def test_the_connection_test_says_what_a_refusal_means(fake_providers, client):
    client.force_login(User.objects.create_superuser("root", password="pw"))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    oa = sandbox_account("oa")
    fake_providers.script(
        "/wechat/cgi-bin/stable_token",
        [{"json": {"errcode": 40164, "errmsg": "invalid ip 203.0.113.7, not in whitelist"}}],
    )
    page = client.post(
        reverse("admin:channels_channelaccount_changelist"),
        {"action": "test_connection", "_selected_action": [oa.pk]},
        follow=True,
    ).content.decode()
    assert (
        "Channel account “oa”: 40164: invalid ip 203.0.113.7, not in whitelist — "
        "this server&#x27;s IP is not on the account&#x27;s IP whitelist"
    ) in page


@pytest.mark.django_db(transaction=True)
def test_a_disabled_accounts_waiting_delivery_does_not_go_out_through_it(fake_providers):
    from channels.sending import delivery_send

    robot = sandbox_account("robot")
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    waiting = queued("wecom_robot", ops, account=robot)
    ChannelAccount.objects.filter(pk=robot.pk).update(enabled=False)
    delivery_send(delivery_id=waiting.pk)
    assert fake_providers.calls("/webhook/send") == []
    assert Delivery.objects.get(pk=waiting.pk).status != DeliveryStatus.SENT
    assert Delivery.objects.get(pk=waiting.pk).last_error_code == "no_account"  # no other robot: said why


@pytest.mark.django_db(transaction=True)
def test_a_disabled_accounts_waiting_deliveries_go_through_its_secondary_on_the_event_loop(fake_providers):
    from channels.flight import chunk_send

    first = sandbox_account("robot")
    second = sandbox_account("robot", name="robot-2", is_default=False)
    ChannelAccount.objects.filter(pk=first.pk).update(secondary=second)
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    waiting = [queued("wecom_robot", ops, account=first, key=f"w{i}") for i in range(3)]
    ChannelAccount.objects.filter(pk=first.pk).update(enabled=False)

    chunk_send([d.pk for d in waiting])

    rows = Delivery.objects.filter(pk__in=[d.pk for d in waiting])
    assert {(d.account_id, d.status) for d in rows} == {(second.pk, DeliveryStatus.SENT)}
    assert all(d.route_reason == "account_disabled: " + first.name for d in rows)


def test_the_fake_keeps_receipts_it_had_nowhere_to_send(monkeypatch):
    from channels import fakeproviders

    state = fakeproviders.State()
    state.sms.append(
        {"provider": "aliyun", "phone": "13912345670", "out_id": "m1:sms", "biz_id": "1^0", "template": "T", "at": 0}
    )
    monkeypatch.setattr(fakeproviders, "_post_reports", lambda pending, targets, batch: {"reports": 0})
    monkeypatch.setattr(fakeproviders, "push_wechat_events", lambda state, targets: 0)
    fakeproviders.push_receipts(state, {"tencent": "http://127.0.0.1:9/unused"})
    assert not state.sms[0].get("reported")


def test_a_binding_names_only_an_account_of_its_own_channel(catalog):
    from django.core.exceptions import ValidationError

    from scenarios.models import ChannelBinding

    binding = ChannelBinding.objects.filter(channel="wechat_oa_template").first()
    binding.account = ChannelAccount.objects.create(**ALIYUN)
    with pytest.raises(ValidationError):
        binding.full_clean()


def test_the_delivery_list_says_a_robots_45009_as_its_rate_limit(channel_admin):
    robot = sandbox_account("robot")
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    waiting = queued("wecom_robot", ops, account=robot)
    Delivery.objects.filter(pk=waiting.pk).update(last_error_code="45009")
    page = channel_admin.get(reverse("admin:channels_delivery_changelist")).content.decode()
    assert "over the robot&#x27;s 20 messages a minute (45009)" in page


def test_disabling_the_default_account_says_the_channel_has_none_left(channel_admin):
    aliyun = ChannelAccount.objects.create(**{**ALIYUN, "is_default": True})
    tencent = sandbox_account("tencent", is_default=False)
    ChannelAccount.objects.filter(pk=aliyun.pk).update(secondary=tencent)
    aliyun.refresh_from_db()
    text = change(channel_admin, aliyun, enabled="").content.decode()
    assert "new deliveries go through “tencent”, the disabled default&#x27;s secondary" in text
    ChannelAccount.objects.filter(pk=tencent.pk).update(enabled=False)
    text = change(channel_admin, aliyun, name="aliyun-off").content.decode()
    assert "no enabled default account" not in text  # said when enabled or default changes, not at each save
    ChannelAccount.objects.filter(pk=tencent.pk).update(enabled=True)
    ChannelAccount.objects.filter(pk=aliyun.pk).update(secondary=None, enabled=True)
    aliyun.refresh_from_db()
    text = change(channel_admin, aliyun, enabled="").content.decode()
    assert "SMS has no enabled default account now: its new deliveries fail (no_account)" in text
    text = change(channel_admin, tencent, is_default="on").content.decode()
    assert "no enabled default account" not in text


def test_a_disabled_defaults_secondary_takes_new_deliveries():
    from channels.routing import account_for
    from channels.services import accounts_enabled

    tencent = sandbox_account("tencent", is_default=False)
    ChannelAccount.objects.create(**{**ALIYUN, "is_default": True, "enabled": False, "secondary": tencent})

    account, reason = account_for(channel="sms", requested=None, accounts=accounts_enabled()["sms"])
    assert (account, reason) == (tencent, f"default_disabled: {ALIYUN['name']}")
    person = Recipient.objects.create(audience="patient", external_id="p-1", phone="13812345678")
    assert queued("sms", person, key="via-secondary").account == tencent  # as deliveries_create routes it


def test_the_account_list_keeps_a_long_test_result_short(channel_admin):
    ChannelAccount.objects.create(
        **ALIYUN,
        check_ok=False,
        check_message="SignatureDoesNotMatch: Specified signature is not matched with our calculation.",
    )
    page = channel_admin.get(reverse("admin:channels_channelaccount_changelist")).content.decode()
    row = page.split('class="field-check_summary"')[1].split("</td>")[0]
    assert ">AccessKey Secret does not match the AccessKey ID (SignatureDoesNotMatch)</span>" in row
    assert 'title="SignatureDoesNotMatch: Specified signature' in row
