"""The channel admin (渠道管理员) connects a real Aliyun SMS account in the browser, in Chinese:
not a sandbox account, aimed at the fake provider server by its base URL, with the credentials as
Aliyun's console names them; tests it, rotates its secret, finds the callback URL to paste."""

import json

import pytest
from django.contrib.auth.models import Group, Permission, User

from channels.models import ChannelAccount
from notifycenter.groups import groups_sync

pytestmark = pytest.mark.django_db(transaction=True)


def save(page):
    page.click("input[name=_continue]")
    page.wait_for_load_state()


def test_a_channel_admin_connects_rotates_and_finds_the_callback_url(page, fake_providers, shot):
    groups_sync(Group, Permission)
    user = User.objects.create_user("chan", password="pw-chan-2026", is_staff=True)
    user.groups.add(Group.objects.get(name="channel admin"))
    page.goto(page.base + "/admin/login/")
    page.fill("#id_username", "chan")
    page.fill("#id_password", "pw-chan-2026")
    page.click("input[type=submit]")
    page.wait_for_load_state()

    page.goto(page.base + "/admin/channels/channelaccount/add/")
    page.fill("#id_name", "阿里云短信")
    page.select_option("#id_channel", "sms")
    page.select_option("#id_provider", "aliyun")
    page.uncheck("#id_sandbox")
    page.fill("#id_base_url", fake_providers.url + "/aliyun")
    page.fill("#id_app_id", "sandbox-access-key")  # the AccessKey ID the fake Aliyun knows
    page.fill("#id_options", json.dumps({"sign_name": "互联网医院"}, ensure_ascii=False))
    page.fill("#id_new_credentials", json.dumps({"access_key_secret": "wrong-secret", "callback_token": "cb-7f3a9d2e"}))
    page.check("#id_is_default")
    save(page)
    account = ChannelAccount.objects.get(name="阿里云短信")
    assert account.credentials == {"access_key_secret": "wrong-secret", "callback_token": "cb-7f3a9d2e"}
    assert "wrong-secret" not in page.content() and "cb-7f3a9d2e" not in page.content()

    def test_connection():
        page.goto(page.base + "/admin/channels/channelaccount/")
        page.check(f"input.action-select[value='{account.pk}']")
        page.select_option("select[name=action]", "test_connection")
        page.click("button[name=index]")
        page.wait_for_load_state()
        return page.inner_text("ul.messagelist")

    assert "SignatureDoesNotMatch" in test_connection()
    shot(page, "channel-admin-wrong-secret")

    # Rotate the secret alone: the callback token stays.
    page.goto(page.base + f"/admin/channels/channelaccount/{account.pk}/change/")
    page.fill("#id_new_credentials", json.dumps({"access_key_secret": "sandbox-access-secret"}))
    save(page)
    account.refresh_from_db()
    assert account.credentials == {"access_key_secret": "sandbox-access-secret", "callback_token": "cb-7f3a9d2e"}
    assert account.check_ok is None  # the failed test was of the old secret

    assert "互联网医院" in test_connection()
    account.refresh_from_db()
    assert account.check_ok is True

    page.goto(page.base + f"/admin/channels/channelaccount/{account.pk}/change/")
    url = page.inner_text("#callback-url")
    assert url == f"{page.base}/api/v1/callbacks/aliyun/{account.pk}?token=<callback_token>"
    assert "****9d2e" in page.inner_text("#callback-setup")
    shot(page, "channel-admin-callback-url")
