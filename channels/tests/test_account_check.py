"""The admin's "test connection" on channel accounts, over real HTTP against the fake providers."""

import io
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import translation

from channels.models import ChannelAccount
from channels.providers import sms
from channels.services import account_check

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_accounts(fake_providers):
    call_command("bootstrap_local", stdout=io.StringIO())  # the accounts `make run` makes
    return fake_providers


def test_every_sandbox_account_passes_its_check_without_messaging_a_person(sandbox_accounts):
    with translation.override("en"):
        results = {a.name: account_check(account=a) for a in ChannelAccount.objects.all()}
    assert results == {name: True for name in results}, {
        a.name: a.check_message for a in ChannelAccount.objects.filter(check_ok=False)
    }
    assert len(results) == 7
    # Each passing check says what it proved, on the account: none is left blank.
    assert not ChannelAccount.objects.filter(check_message="").exists()
    paths = {c["path"] for c in sandbox_accounts.calls()}
    # Token fetches, a push id, signed reads for SMS, and one test line to the ops robot's group.
    assert paths == {
        "/wechat/cgi-bin/stable_token",
        "/wecom/cgi-bin/gettoken",
        "/wecom/cgi-bin/agent/get",
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


def test_the_group_robot_check_says_it_posted_the_test_line(sandbox_accounts):
    robot = ChannelAccount.objects.get(name="sandbox-wecom-ops-robot")
    with translation.override("en"):
        assert account_check(account=robot) is True
    robot.refresh_from_db()
    assert (robot.check_ok, robot.check_message) == (True, "test message posted to the group")
    assert robot.checked_at is not None
    (call,) = sandbox_accounts.calls("/wecom/cgi-bin/webhook/send")
    assert call["body"]["text"]["content"] == "【通知中心】连接测试，请忽略。"


def test_the_wecom_app_check_proves_the_agentid_is_the_secrets_app(sandbox_accounts):
    app = ChannelAccount.objects.get(name="sandbox-wecom-app")
    with translation.override("en"):
        assert account_check(account=app) is True
    app.refresh_from_db()
    assert app.check_message.startswith("access token issued, valid for ")
    assert app.check_message.endswith(" s; app “互联网医院通知” (AgentId 1000002)")
    (call,) = sandbox_accounts.calls("/wecom/cgi-bin/agent/get")
    assert call["query"]["agentid"] == "1000002"


@pytest.mark.parametrize(
    ("agentid", "words"),
    [
        (1000003, "301002: not allow operate another agent with this accesstoken"),  # another app's AgentId
        ("abc", "40056: invalid agentid"),
    ],
)
def test_a_wecom_app_check_with_another_apps_agentid_fails_with_weComs_words(sandbox_accounts, agentid, words):
    """A typo in the AgentId passed the check before (the token proves CorpID and Secret only), and
    every message then failed; now the check fails, in WeCom's words, and the console says why."""
    app = ChannelAccount.objects.get(name="sandbox-wecom-app")
    app.options = {**app.options, "agentid": agentid}
    app.save()
    assert account_check(account=app) is False
    app.refresh_from_db()
    assert (app.check_ok, app.check_message) == (False, words)


def test_the_fake_wecom_refuses_a_message_for_another_app_than_the_tokens(sandbox_accounts):
    """As WeCom does: a token acts for the app its Secret belongs to (POST /_wecom_apps binds one)."""
    import httpx

    url = sandbox_accounts.url
    httpx.post(f"{url}/_wecom_apps", json={"corpid": "c", "corpsecret": "s", "agentid": 1000009})
    token = httpx.get(f"{url}/wecom/cgi-bin/gettoken", params={"corpid": "c", "corpsecret": "s"}).json()
    body = {"touser": "LiSi", "msgtype": "markdown", "markdown": {"content": "值班提醒"}}

    def send(agentid):
        return httpx.post(
            f"{url}/wecom/cgi-bin/message/send",
            params={"access_token": token["access_token"]},
            json={**body, "agentid": agentid},
        ).json()["errcode"]

    assert [send(1000002), send(1000009)] == [301002, 0]


class NightInBeijing(datetime):
    """02:25 on 1 December in Beijing: still 30 November in UTC."""

    @classmethod
    def now(cls, tz=None):
        moment = datetime(2026, 11, 30, 18, 25, tzinfo=UTC)
        return moment.astimezone(tz) if tz is not None else moment.replace(tzinfo=None)


def test_the_tencent_check_asks_for_todays_hours_in_china(sandbox_accounts, monkeypatch):
    monkeypatch.setattr(sms, "datetime", NightInBeijing)
    tencent = ChannelAccount.objects.get(name="sandbox-tencent-sms")
    assert account_check(account=tencent) is True
    (call,) = sandbox_accounts.calls("/tencent/")
    assert (call["body"]["BeginTime"], call["body"]["EndTime"]) == ("2026120100", "2026120123")


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
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # the console's language switch
    broken = ChannelAccount.objects.get(name="sandbox-aliyun-sms")
    broken.credentials = {"access_key_secret": "wrong"}
    broken.save()
    names = ["sandbox-jpush", "sandbox-aliyun-sms", "sandbox-wecom-ops-robot"]
    ids = list(ChannelAccount.objects.filter(name__in=names).values_list("pk", flat=True))
    page = client.post(
        "/admin/channels/channelaccount/",
        {"action": "test_connection", "_selected_action": ids},
        follow=True,
    )
    text = page.content.decode()
    # Each name as it is stored (the admin capitalizes a message's first letter: the name is not first).
    assert "Channel account “sandbox-jpush”: app key and master secret accepted" in text
    assert "Channel account “sandbox-aliyun-sms”: SignatureDoesNotMatch" in text
    assert "Channel account “sandbox-wecom-ops-robot”: test message posted to the group" in text
    # The secret never comes back in full.
    assert "wrong" not in text


def test_the_admin_action_speaks_the_consoles_language_chinese_by_default(sandbox_accounts, client):
    # The shipped catalog (locale/zh_Hans): what shows in Chinese went through gettext.
    client.force_login(User.objects.create_superuser("ops", password="pw"))
    ids = list(ChannelAccount.objects.values_list("pk", flat=True))
    page = client.post(
        "/admin/channels/channelaccount/",
        {"action": "test_connection", "_selected_action": ids},
        follow=True,
    )
    text = page.content.decode()
    for line in [
        "渠道账号“sandbox-wechat-oa”：已获取 access token，有效期 7200 秒",
        "渠道账号“sandbox-wechat-mini”：已获取 access token，有效期 7200 秒",
        "渠道账号“sandbox-wecom-app”：已获取 access token，有效期 ",  # WeCom: what is left of its token
        "渠道账号“sandbox-wecom-ops-robot”：测试消息已发送到群",
        "渠道账号“sandbox-jpush”：AppKey 与 Master Secret 验证通过",
        "渠道账号“sandbox-aliyun-sms”：签名 互联网医院 已审核通过",
        "渠道账号“sandbox-tencent-sms”：短信应用 1400000000 已响应",
    ]:
        assert line in text
    robot = ChannelAccount.objects.get(name="sandbox-wecom-ops-robot")
    assert (robot.check_ok, robot.check_message) == (True, "测试消息已发送到群")


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (0, "sign_status_0", "signature 互联网医院 is still under review 无审核备注"),
        (2, "sign_status_2", "signature 互联网医院 failed review: 文件不能证明信息真实性,请重新上传"),
        (10, "sign_status_10", "signature 互联网医院: review cancelled 无审核备注"),
    ],
)
def test_an_aliyun_signature_not_approved_fails_the_check(sandbox_accounts, status, code, words):
    # Aliyun answers Code OK whatever the review state: only SignStatus 1 (审核通过) sends.
    sandbox_accounts.signs({"互联网医院": status})
    aliyun = ChannelAccount.objects.get(name="sandbox-aliyun-sms")
    with translation.override("en"):
        assert account_check(account=aliyun) is False
    aliyun.refresh_from_db()
    assert aliyun.check_message == f"{code}: {words}"
