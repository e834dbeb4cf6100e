"""The admin's "test connection" on channel accounts, over real HTTP against the fake providers."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from channels.models import ChannelAccount
from channels.services import account_check

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_accounts(fake_providers):
    call_command("bootstrap_local", stdout=io.StringIO())  # the accounts `make run` makes
    return fake_providers


def test_every_sandbox_account_passes_its_check_without_messaging_a_person(sandbox_accounts):
    results = {a.name: account_check(account=a) for a in ChannelAccount.objects.all()}
    assert results == {name: True for name in results}, {
        a.name: a.check_message for a in ChannelAccount.objects.filter(check_ok=False)
    }
    assert len(results) == 7
    paths = {c["path"] for c in sandbox_accounts.calls()}
    # Token fetches, a push id, signed reads for SMS, and one test line to the ops robot's group.
    assert paths == {
        "/wechat/cgi-bin/stable_token",
        "/wecom/cgi-bin/gettoken",
        "/wecom/cgi-bin/webhook/send",
        "/jpush/v3/push/cid",
        "/aliyun/",
        "/tencent/",
    }
    actions = {c["body"].get("Action") for c in sandbox_accounts.calls("/aliyun/")}
    assert actions == {"QuerySmsSign"}
    account = ChannelAccount.objects.get(name="sandbox-wechat-oa")
    assert (account.check_ok, account.check_message) == (True, "access token issued, valid for 7200 s")
    assert account.checked_at is not None


@pytest.mark.parametrize(
    ("name", "credentials", "words"),
    [
        ("sandbox-wechat-oa", {"app_secret": ""}, "40125: invalid appsecret"),
        ("sandbox-wecom-ops-robot", {"robot_key": ""}, "no_account: No WeCom robot key is configured."),
        (
            "sandbox-aliyun-sms",
            {"access_key_secret": "wrong"},
            "SignatureDoesNotMatch: Specified signature is not matched with our calculation.",
        ),
        (
            "sandbox-tencent-sms",
            {"secret_id": "sandbox-secret-id", "secret_key": "wrong"},
            "AuthFailure.SignatureFailure: The provided credentials could not be validated. "
            "Please check your signature is correct.",
        ),
    ],
)
def test_a_failing_check_keeps_the_providers_words(sandbox_accounts, name, credentials, words):
    account = ChannelAccount.objects.get(name=name)
    account.credentials = credentials
    account.save()
    assert account_check(account=account) is False
    account.refresh_from_db()
    assert (account.check_ok, account.check_message) == (False, words)


def test_the_admin_action_reports_each_account(sandbox_accounts, client):
    admin = User.objects.create_superuser("ops", password="pw")
    client.force_login(admin)
    broken = ChannelAccount.objects.get(name="sandbox-aliyun-sms")
    broken.credentials = {"access_key_secret": "wrong"}
    broken.save()
    ids = list(
        ChannelAccount.objects.filter(name__in=["sandbox-jpush", "sandbox-aliyun-sms"]).values_list("pk", flat=True)
    )
    page = client.post(
        "/admin/channels/channelaccount/",
        {"action": "test_connection", "_selected_action": ids},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    text = page.content.decode()
    assert "Sandbox-jpush: app key and master secret accepted" in text
    assert "Sandbox-aliyun-sms: SignatureDoesNotMatch" in text
    # (The admin capitalizes messages.) The secret never comes back in full.
    assert "wrong" not in text
