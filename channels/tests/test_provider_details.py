"""Provider details real accounts need (issue 11, item 5), each over real HTTP against the fake
provider server, which answers as the providers document (quoted where it matters)."""

import time
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone

from channels import tokens
from channels.addresses import deliveries_fill_addresses
from channels.checks import content_problems
from channels.models import (
    Delivery,
    DeliveryStatus,
    Recipient,
    TokenRefresh,
    TokenRefreshReason,
)
from channels.providers import backend_for
from channels.providers.wecom import cut_utf8, duplicate_check_seconds, markdown
from channels.ratelimit import take, take_sliding
from channels.sending import delivery_send
from channels.services import DeliveryRequest, account_check, deliveries_create
from channels.tests.helpers import sandbox_account

pytestmark = pytest.mark.django_db(transaction=True)

LINK = {"h5": "https://m.hospital.example/im?id=9001", "app": "hospitaldoctor://im?inquiryId=9001", "route": "im"}


@pytest.fixture(autouse=True)
def no_local_tokens():
    """Each test starts without the tokens a process remembers between sends."""
    tokens._local.clear()
    yield
    tokens._local.clear()


@pytest.fixture
def jpush(db):
    return sandbox_account(
        "jpush",
        options={
            "third_party_channel": {
                "xiaomi": {"channel_id": "120001"},
                "huawei": {"importance": "NORMAL", "category": "WORK"},
                "honor": {"importance": "NORMAL"},
                "oppo": {"channel_id": "service", "category": "TODO", "notify_level": 2},
                "vivo": {"classification": 1, "category": "TODO"},
            }
        },
    )


@pytest.fixture
def patient(db):
    return Recipient.objects.create(audience="patient", external_id="p-42", wechat_oa_openid="oOA-p42-openid-0001")


@pytest.fixture
def staff(db):
    return Recipient.objects.create(audience="operations", external_id="ops-li", wecom_userid="LiSi")


@pytest.fixture
def doctor(db):
    return Recipient.objects.create(audience="doctor", external_id="d-17", push_registration_ids=["1a0018970aa"])


def create(channel, recipient, key="k1", *, title="医生已接诊", body="李明医生已接诊您的问诊。", options=None):
    """A queued delivery that the test sends itself (not at once by the eager worker)."""
    (delivery,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel=channel,
                recipient=recipient,
                idempotency_key=key,
                content={
                    "title": title,
                    "body": body,
                    "link": LINK,
                    "template_id": "tmpl-1",
                    "params": {"thing1": "李明"},
                    "options": options or {},
                },
                not_before=timezone.now() + timedelta(hours=1),
            )
        ]
    )
    Delivery.objects.filter(pk=delivery.pk).update(not_before=timezone.now())
    return delivery


def loaded(pk):
    """A delivery as the engine hands it to a backend: its real address filled from the directory."""
    delivery = Delivery.objects.select_related("account").get(pk=pk)
    deliveries_fill_addresses([delivery])
    return delivery


def send(channel, recipient, key="k1", **kwargs):
    delivery = create(channel, recipient, key, **kwargs)
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def wechat_send_with(url, token, openid="oOther"):
    """Another system of the hospital on the same AppID, sending with its own token."""
    return httpx.post(
        f"{url}/wechat/cgi-bin/message/template/send",
        params={"access_token": token},
        json={"touser": openid, "template_id": "t", "data": {"thing1": {"value": "x"}}},
    ).json()["errcode"]


def stable_token(url, force=False):
    body = {"grant_type": "client_credential", "appid": "wx-oa", "secret": "s-oa", "force_refresh": force}
    return httpx.post(f"{url}/wechat/cgi-bin/stable_token", json=body).json()


# 1. WeChat tokens through /cgi-bin/stable_token


def test_wechat_tokens_come_from_stable_token_in_normal_mode(fake_providers, oa, patient):
    delivery = send("wechat_oa_template", patient)

    assert delivery.status == DeliveryStatus.SENT
    assert fake_providers.calls("/cgi-bin/token") == []  # getAccessToken would retire the others' token
    (call,) = fake_providers.calls("/cgi-bin/stable_token")
    assert call["method"] == "POST"
    assert call["query"] == {}
    assert call["body"] == {
        "grant_type": "client_credential",
        "appid": "wx-oa",
        "secret": "s-oa",
        "force_refresh": False,
    }


def test_the_centers_refreshes_and_checks_never_retire_another_systems_token(fake_providers, oa, patient):
    # Another system on the same AppID, with the stable token and the plain one.
    theirs_stable = stable_token(fake_providers.url)["access_token"]
    theirs_plain = httpx.get(
        f"{fake_providers.url}/wechat/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": "wx-oa", "secret": "s-oa"},
    ).json()["access_token"]

    assert send("wechat_oa_template", patient, key="a").status == DeliveryStatus.SENT
    assert account_check(account=oa) is True  # the admin's connection test
    cache.clear()
    tokens._local.clear()
    assert send("wechat_oa_template", patient, key="b").status == DeliveryStatus.SENT  # a refresh

    assert wechat_send_with(fake_providers.url, theirs_stable) == 0
    assert wechat_send_with(fake_providers.url, theirs_plain) == 0
    bodies = [c["body"] for c in fake_providers.calls("/cgi-bin/stable_token")]
    assert all(b["force_refresh"] is False for b in bodies[1:])  # ours: never forced
    used = {c["query"]["access_token"] for c in fake_providers.calls("/message/template/send")}
    assert theirs_stable in used  # normal mode hands everyone the same token while it is valid


def test_the_fake_stable_token_keeps_wechats_documented_rules(fake_providers):
    url = fake_providers.url
    first = stable_token(url)
    # Normal mode: "access_token 有效期内重复调用该接口不会更新 access_token".
    assert stable_token(url)["access_token"] == first["access_token"]
    # Force refresh: "会导致上次获取的 access_token 失效" …
    forced = stable_token(url, force=True)["access_token"]
    assert forced != first["access_token"]
    assert wechat_send_with(url, first["access_token"]) == 40001
    # … "连续使用该模式时，请保证调用时间隔至少为30s，否则不会刷新".
    assert stable_token(url, force=True)["access_token"] == forced
    # "强制刷新模式每天限用20次".
    answers = []
    for _ in range(20):
        fake_providers.advance(31)
        answers.append(stable_token(url, force=True))
    assert [a.get("errcode") for a in answers[-1:]] == [45009]
    assert sum("access_token" in a for a in answers) == 19  # one of the 20 went earlier
    # "普通模式下平台会提前5分钟更新": in the last 5 minutes a new token, the old one still taken.
    current = stable_token(url)
    fake_providers.advance(current["expires_in"] - 200)
    renewed = stable_token(url)
    assert renewed["access_token"] != current["access_token"] and renewed["expires_in"] == 7200
    assert wechat_send_with(url, current["access_token"]) == 0
    fake_providers.advance(201)
    assert wechat_send_with(url, current["access_token"]) == 40001
    # "该接口仅支持 POST JSON 形式的调用".
    assert httpx.get(f"{url}/wechat/cgi-bin/stable_token").json()["errcode"] == 43002


def test_the_fake_plain_token_retires_the_previous_one_after_five_minutes(fake_providers):
    url = fake_providers.url
    params = {"grant_type": "client_credential", "appid": "wx-oa", "secret": "s-oa"}
    old = httpx.get(f"{url}/wechat/cgi-bin/token", params=params).json()["access_token"]
    stable = stable_token(url)["access_token"]
    new = httpx.get(f"{url}/wechat/cgi-bin/token", params=params).json()["access_token"]

    assert wechat_send_with(url, old) == 0  # "5分钟内，新老 access_token 都可用"
    fake_providers.advance(301)
    assert wechat_send_with(url, old) == 40001  # getAccessToken retired it
    assert wechat_send_with(url, new) == 0
    assert wechat_send_with(url, stable) == 0  # "与 getAccessToken 获取的调用凭证完全隔离，互不影响"


# 8. Token refreshes recorded


def test_token_refreshes_are_recorded_with_why_and_the_providers_answer(fake_providers, oa, patient):
    send("wechat_oa_template", patient, key="a")  # first use
    fake_providers.expire_tokens()
    send("wechat_oa_template", patient, key="b")  # WeChat says 40001: invalid
    cache.delete(tokens._key(oa.pk))  # the cached token's time ran out
    tokens._local.clear()
    send("wechat_oa_template", patient, key="c")
    assert account_check(account=oa) is True
    oa.credentials = {"app_secret": ""}
    oa.save()
    assert account_check(account=oa) is False

    rows = [
        (reason, ok, code, bool(expires_in and expires_in > 7000))  # a stable token's remaining life
        for reason, ok, code, expires_in in TokenRefresh.objects.order_by("at", "pk").values_list(
            "reason", "ok", "error_code", "expires_in"
        )
    ]
    assert rows == [
        (TokenRefreshReason.FIRST_USE, True, "", True),
        (TokenRefreshReason.INVALID, True, "", True),
        (TokenRefreshReason.EXPIRED, True, "", True),
        (TokenRefreshReason.CHECK, True, "", True),
        (TokenRefreshReason.CHECK, False, "40125", False),
    ]
    assert TokenRefresh.objects.filter(ok=False).get().error_message == "invalid appsecret"


def test_a_failed_refresh_on_the_send_path_is_recorded_too(fake_providers, wecom_app, staff):
    fake_providers.script("/wecom/cgi-bin/gettoken", [{"json": {"errcode": 40001, "errmsg": "invalid secret"}}])

    delivery = send("wecom_app", staff)

    assert delivery.status != DeliveryStatus.SENT
    (row,) = TokenRefresh.objects.all()
    assert (row.account_id, row.reason, row.ok, row.error_code) == (wecom_app.pk, "first_use", False, "40001")


def test_token_refreshes_are_shown_read_only_in_chinese_and_purged(client, oa, settings):
    TokenRefresh.objects.create(account=oa, reason=TokenRefreshReason.CHECK, ok=True, expires_in=7200)
    old = TokenRefresh.objects.create(account=oa, reason=TokenRefreshReason.EXPIRED, ok=True, expires_in=7200)
    TokenRefresh.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=91))
    client.force_login(User.objects.create_superuser("ops", password="pw"))

    page = client.get("/admin/channels/tokenrefresh/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "令牌刷新" in text and "连接测试" in text and "已过期" in text
    assert "/admin/channels/tokenrefresh/add/" not in text
    assert client.get(f"/admin/channels/tokenrefresh/{old.pk}/delete/").status_code == 403

    settings.TOKEN_REFRESH_RETENTION_DAYS = 90
    assert tokens.token_refreshes_purge() == 1
    assert list(TokenRefresh.objects.values_list("reason", flat=True)) == ["check"]


# 4. WeCom robot: a sliding window of 20 a minute


def test_a_sliding_window_never_grants_more_than_its_limit_in_any_window_where_a_bucket_does():
    # A bucket of 3 per second grants its burst, then the refill on top: 4 within one second.
    bucket = [take("b", per_minute=180, burst=3) for _ in range(3)]
    time.sleep(0.4)
    bucket.append(take("b", per_minute=180, burst=3))
    assert bucket == [0.0, 0.0, 0.0, 0.0]
    # The window of 3 per second: the 4th waits until the first grant is a second old.
    window = [take_sliding("w", limit=3, window_seconds=1) for _ in range(3)]
    time.sleep(0.4)
    wait = take_sliding("w", limit=3, window_seconds=1)
    assert window == [0.0, 0.0, 0.0]
    assert 0 < wait <= 0.61  # the first grant leaves the window 1 s after it was made
    time.sleep(wait)
    assert take_sliding("w", limit=3, window_seconds=1) == 0.0


def test_a_burst_of_25_robot_messages_sends_20_and_keeps_5_waiting_without_one_45009(fake_providers, robot):
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    assert robot.rate_limit_per_minute == 20  # a robot account always has WeCom's limit

    rows = [create("wecom_robot", ops, key=f"r{i}") for i in range(25)]
    for row in rows:
        delivery_send(delivery_id=row.pk)

    statuses = {s: Delivery.objects.filter(status=s).count() for s in (DeliveryStatus.SENT, DeliveryStatus.QUEUED)}
    assert statuses == {DeliveryStatus.SENT: 20, DeliveryStatus.QUEUED: 5}
    assert len(fake_providers.calls("/webhook/send")) == 20  # none refused with 45009
    waiting = Delivery.objects.filter(status=DeliveryStatus.QUEUED)
    assert all(55 < (d.not_before - timezone.now()).total_seconds() <= 62 for d in waiting)
    assert all(d.attempt_count == 0 for d in waiting)  # waiting is not a failed try


def test_the_fake_robot_refuses_the_21st_message_in_a_minute_as_wecom_does(fake_providers):
    url = f"{fake_providers.url}/wecom/cgi-bin/webhook/send"
    body = {"msgtype": "text", "text": {"content": "x"}}
    answers = [httpx.post(url, params={"key": "k"}, json=body).json()["errcode"] for _ in range(21)]
    other_robot = httpx.post(url, params={"key": "k2"}, json=body).json()["errcode"]
    fake_providers.advance(61)
    later = httpx.post(url, params={"key": "k"}, json=body).json()

    assert answers == [0] * 20 + [45009]
    assert other_robot == 0  # per robot
    assert later["errcode"] == 0


# 2. JPush: service classification and vendor fields


def test_jpush_pushes_as_a_service_message_with_the_accounts_vendor_fields_and_the_bindings_overrides(
    fake_providers, jpush, doctor
):
    delivery = send(
        "app_push",
        doctor,
        options={"third_party_channel": {"huawei": {"category": "IM"}, "oppo": {"notify_level": 16}}},
    )

    assert delivery.status == DeliveryStatus.SENT
    (push,) = fake_providers.calls("/v3/push")
    assert push["body"]["options"] == {
        "apns_production": False,
        "time_to_live": 86400,
        "classification": 1,
        "third_party_channel": {
            "xiaomi": {"channel_id": "120001"},
            "huawei": {"importance": "NORMAL", "category": "IM"},
            "honor": {"importance": "NORMAL"},
            "oppo": {"channel_id": "service", "category": "TODO", "notify_level": 16},
            "vivo": {"classification": 1, "category": "TODO"},
        },
    }


def test_jpush_vendor_fields_that_jpush_refuses_are_named_before_and_at_send(fake_providers, jpush, doctor):
    options = {"classification": 2, "third_party_channel": {"huawei": {"importance": "URGENT"}}}

    assert content_problems(channel="app_push", content={"title": "t", "body": "b", "options": options}) == [
        "options.classification must be 0 or 1, not 2",
        "options.third_party_channel.huawei.importance must be one of LOW, NORMAL, HIGH, not 'URGENT'",
    ]
    delivery = send("app_push", doctor, options={"third_party_channel": {"vivo": {"classification": 3}}})
    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.FAILED, "1003")
    assert "options.third_party_channel.vivo.classification" in delivery.last_error_message


# 3. JPush: an unexpected answer from the cid endpoint


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"json": {"sendno": "0"}}, ("bad_response", DeliveryStatus.QUEUED)),  # no cidlist
        ({"json": {"cidlist": []}}, ("bad_response", DeliveryStatus.QUEUED)),
        ({"json": ["a-b"]}, ("bad_response", DeliveryStatus.QUEUED)),  # JSON, not an object
        ({"text": "<html><body>502 Bad Gateway</body></html>"}, ("bad_response", DeliveryStatus.QUEUED)),
        ({"status": 404, "text": "<html>not found</html>"}, ("bad_response", DeliveryStatus.QUEUED)),
        ({"json": {"error": "oops"}}, ("bad_response", DeliveryStatus.QUEUED)),
        ({"status": 401, "json": {"error": {"code": 1004, "message": "Authen failed"}}}, ("1004", "failed")),
    ],
)
def test_an_unexpected_cid_answer_is_a_provider_error_not_a_crash(fake_providers, jpush, doctor, answer, outcome):
    fake_providers.script("/jpush/v3/push/cid", [answer])

    delivery = send("app_push", doctor)

    assert (delivery.last_error_code, delivery.status) == outcome
    assert fake_providers.calls("/v3/push") == []  # nothing was pushed
    (attempt,) = delivery.attempts.all()
    assert attempt.error_code == outcome[0]


# 5. WeCom sizes


def test_wecom_sizes_are_checked_when_a_template_is_saved():
    long_body = "患" * 1000  # 3,000 bytes
    content = {"title": "提醒", "body": long_body, "link": LINK}

    assert content_problems(channel="wecom_app", content=content) == [
        f"markdown is {len(markdown(content).encode())} bytes; a WeCom app message takes at most 2048"
    ]
    assert content_problems(channel="wecom_robot", content=content) == []
    assert content_problems(channel="wecom_robot", content={**content, "body": long_body * 2})[0].endswith(
        "a robot takes at most 4096"
    )
    assert content_problems(channel="wecom_robot", content={**content, "options": {"msgtype": "text"}}) == [
        "text is 3007 bytes; a robot takes at most 2048"
    ]


def test_a_cut_keeps_whole_characters_and_never_splits_a_link():
    text = "医生" * 10 + "[处方详情](https://m.hospital.example/rx?id=1)" + "尾" * 10
    for limit in range(10, len(text.encode()) + 1):
        cut = cut_utf8(text, limit)
        assert len(cut.encode()) <= limit
        cut.encode().decode("utf-8")  # whole characters
        assert "[处方详情](" not in cut or "[处方详情](https://m.hospital.example/rx?id=1)" in cut
    assert cut_utf8(text, 100) == "医生" * 10 + "…"


def test_too_long_wecom_messages_are_cut_at_send_and_accepted(fake_providers, wecom_app, robot, staff):
    body = "您有新的待审处方，请及时处理。" * 100  # 4,500 bytes
    app = send("wecom_app", staff, key="app", body=body)
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    to_robot = send("wecom_robot", ops, key="robot", body=body * 2)

    assert (app.status, to_robot.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)
    app_text = fake_providers.calls("/message/send")[0]["body"]["markdown"]["content"]
    robot_text = fake_providers.calls("/webhook/send")[0]["body"]["markdown"]["content"]
    assert len(app_text.encode()) <= 2048 and len(robot_text.encode()) <= 4096
    for text in (app_text, robot_text):
        assert text.startswith("**医生已接诊**\n您有新的待审处方")
        assert text.endswith("…\n[查看详情](https://m.hospital.example/im?id=9001)")  # the link arrives whole


# 6. WeCom app: the duplicate check as retry protection only


def test_the_duplicate_check_lasts_as_long_as_the_engines_retries_not_half_an_hour():
    assert 60 <= duplicate_check_seconds() < 1800


def test_a_retried_wecom_app_message_is_shown_once(fake_providers, wecom_app, staff):
    delivery = create("wecom_app", staff)
    backend = backend_for("wecom_app")

    first = backend.send(loaded(delivery.pk))
    retry = backend.send(loaded(delivery.pk))  # after a lost answer

    assert first.outcome == retry.outcome == "sent"
    first_body, retry_body = (c["body"] for c in fake_providers.calls("/message/send"))
    assert first_body == retry_body  # the same request: WeCom's check applies
    assert (first_body["enable_duplicate_check"], first_body["duplicate_check_interval"]) == (
        1,
        duplicate_check_seconds(),
    )
    assert len(fake_providers.delivered("wecom_app")) == 1


def test_distinct_deliveries_with_the_same_words_are_never_swallowed(fake_providers, wecom_app, staff):
    rows = [send("wecom_app", staff, key=f"same-{i}") for i in range(7)]

    assert {r.status for r in rows} == {DeliveryStatus.SENT}
    assert len(fake_providers.delivered("wecom_app")) == 7
    checks = [c["body"]["enable_duplicate_check"] for c in fake_providers.calls("/message/send")]
    assert checks == [1, 0, 0, 0, 0, 0, 0]
    # A retry keeps its first decision: the first with the check, the others without.
    backend = backend_for("wecom_app")
    for row in (rows[0], rows[1]):
        backend.send(loaded(row.pk))
    assert [c["body"]["enable_duplicate_check"] for c in fake_providers.calls("/message/send")][-2:] == [1, 0]
    # Past the window (the claim's time in the cache has run out), the same words get the check again.
    cache.clear()
    fake_providers.advance(duplicate_check_seconds() + 1)
    assert send("wecom_app", staff, key="later").status == DeliveryStatus.SENT
    assert fake_providers.calls("/message/send")[-1]["body"]["enable_duplicate_check"] == 1
    assert len(fake_providers.delivered("wecom_app")) == 9  # 7, the second's unprotected retry, "later"


def test_the_fake_wecom_app_swallows_a_repeat_within_the_interval_and_answers_ok(fake_providers):
    url = fake_providers.url
    token = httpx.get(f"{url}/wecom/cgi-bin/gettoken", params={"corpid": "c", "corpsecret": "s"}).json()
    body = {
        "touser": "LiSi",
        "msgtype": "markdown",
        "agentid": 1000002,
        "markdown": {"content": "同样的话"},
        "enable_duplicate_check": 1,
        "duplicate_check_interval": 120,
    }

    def post(b):
        return httpx.post(
            f"{url}/wecom/cgi-bin/message/send", params={"access_token": token["access_token"]}, json=b
        ).json()

    first, repeat = post(body), post(body)
    unchecked = post({**body, "enable_duplicate_check": 0})
    fake_providers.advance(121)
    later = post(body)

    assert [a["errcode"] for a in (first, repeat, unchecked, later)] == [0, 0, 0, 0]  # a repeat looks sent
    assert len(fake_providers.delivered("wecom_app")) == 3
    assert post({**body, "duplicate_check_interval": 4 * 3600 + 1})["errcode"] == 40058


# 7. WeChat OA client_msg_id and JPush cid de-duplication


def test_the_fake_official_account_sends_one_message_per_client_msg_id_for_ten_minutes(fake_providers, oa, patient):
    delivery = create("wechat_oa_template", patient)
    backend = backend_for("wechat_oa_template")

    def again():
        return backend.send(loaded(delivery.pk))

    first, repeat = again(), again()
    assert (first.outcome, repeat.outcome) == ("sent", "sent")
    assert first.provider_message_id == repeat.provider_message_id  # answered as the send it repeats
    assert len(fake_providers.delivered("wechat_oa_template")) == 1
    fake_providers.advance(601)  # "10分钟有效，超过10分钟不保证效果"
    again()
    assert len(fake_providers.delivered("wechat_oa_template")) == 2


def test_a_repeated_jpush_cid_returns_the_first_push_for_a_day(fake_providers, jpush, doctor):
    delivery = create("app_push", doctor)
    backend = backend_for("app_push")

    def again():
        return backend.send(loaded(delivery.pk))

    first, repeat = again(), again()
    assert first.provider_message_id == repeat.provider_message_id  # "直接返回第一次成功推送的结果"
    assert len(fake_providers.delivered("app_push")) == 1
    fake_providers.advance(86401)  # "CID 的有效期为 1 天"
    assert again().provider_message_id != first.provider_message_id
    assert len(fake_providers.delivered("app_push")) == 2


def test_the_account_form_names_vendor_fields_jpush_refuses_and_a_robot_rate_over_20(db):
    from channels.admin import ChannelAccountForm

    base = {"provider": "jpush", "enabled": True, "sandbox": True, "app_id": "k"}
    form = ChannelAccountForm(
        data={
            **base,
            "name": "push",
            "channel": "app_push",
            "options": '{"third_party_channel": {"oppo": {"notify_level": 3}, "xiaomi": {"channel_id": ""}}}',
        }
    )
    assert not form.is_valid()
    assert form.errors["options"] == [
        "options.third_party_channel.oppo.notify_level must be one of 1, 2, 16, not 3; "
        "options.third_party_channel.xiaomi.channel_id must be a non-empty string"
    ]
    robot_form = ChannelAccountForm(
        data={**base, "provider": "wecom", "name": "r", "channel": "wecom_robot", "rate_limit_per_minute": 30}
    )
    assert not robot_form.is_valid()
    assert list(robot_form.errors) == ["rate_limit_per_minute"]
    good = ChannelAccountForm(
        data={
            **base,
            "name": "p2",
            "channel": "app_push",
            "options": '{"third_party_channel": {"vivo": {"category": "TODO"}}}',
        }
    )
    assert good.is_valid(), good.errors


def test_a_late_wecom_app_answer_is_resent_with_the_check_and_never_without_it(
    fake_providers, wecom_app, staff, settings
):
    from channels.reconcile import delivery_reconcile

    settings.PROVIDER_TIMEOUT = (1.0, 0.3)  # the fake answers after 0.9 s, acting on the request first
    settings.RECONCILE_AFTER_SECONDS = 0
    fake_providers.script("/wecom/cgi-bin/message/send", [{"latency_ms": 900}, {"latency_ms": 900}])
    first, second = create("wecom_app", staff, key="first"), create("wecom_app", staff, key="second")

    for row in (first, second):
        delivery_send(delivery_id=row.pk)
        assert Delivery.objects.get(pk=row.pk).status == DeliveryStatus.UNKNOWN
        Delivery.objects.filter(pk=row.pk).update(not_before=timezone.now())
    decisions = [delivery_reconcile(delivery_id=row.pk) for row in (first, second)]
    delivery_send(delivery_id=first.pk)

    # The first went with the check: resent with the same request, and WeCom shows it once. The
    # second (same words, so without the check) has no key to resend with: unknown, not resent.
    assert decisions == ["resend_same_key", "no_way_to_ask"]
    assert Delivery.objects.get(pk=first.pk).status == DeliveryStatus.SENT
    assert [c["body"]["enable_duplicate_check"] for c in fake_providers.calls("/message/send")] == [1, 0, 1]
    assert len(fake_providers.delivered("wecom_app")) == 2


def test_the_fake_stable_token_keeps_its_minute_quota(fake_providers, monkeypatch):
    from channels import fakeproviders

    monkeypatch.setattr(fakeproviders, "STABLE_PER_MINUTE", 3)  # "1万次每分钟", made small to reach
    answers = [stable_token(fake_providers.url) for _ in range(4)]
    fake_providers.advance(61)

    assert [a.get("errcode", 0) for a in answers] == [0, 0, 0, 45011]
    assert "access_token" in stable_token(fake_providers.url)


def test_a_refresh_record_that_cannot_be_written_does_not_stop_the_send(fake_providers, oa, patient, monkeypatch):
    from django.db import DatabaseError

    class Away:
        def filter(self, **kwargs):
            raise DatabaseError("server closed the connection unexpectedly")

        create = filter

    monkeypatch.setattr(tokens.TokenRefresh, "objects", Away())

    assert send("wechat_oa_template", patient).status == DeliveryStatus.SENT
