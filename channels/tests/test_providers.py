"""Provider backends over real HTTP against the fake provider server (channels/fakeproviders.py)."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, Recipient, SubscribeConsent
from channels.providers.wechat import InvalidParam, checked_params
from channels.sending import delivery_send
from channels.services import DeliveryRequest, deliveries_create
from channels.tests.helpers import sandbox_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(fake_providers):
    return fake_providers


@pytest.fixture
def accounts(db):
    return {
        "oa": sandbox_account("oa"),
        "mini": sandbox_account("mini", options={"miniprogram_state": "trial"}),
        "robot": sandbox_account("robot"),
    }


@pytest.fixture
def jpush(db):
    return sandbox_account("jpush", options={"apns_production": True})


@pytest.fixture
def patient(db):
    return Recipient.objects.create(
        audience="patient",
        external_id="p-42",
        wechat_oa_openid="oOA-p42-openid-0001",
        wechat_mini_openid="oMini-p42-openid-0001",
    )


LINK = {
    "route": "im",
    "mini_program": "/pages/im/index?inquiryId=9001",
    "h5": "https://m.hospital.example/im?id=9001",
    "app": "hospitaldoctor://im?inquiryId=9001",
}


def send(channel, recipient, key="k1", params=None, template_id="tmpl-1", options=None):
    (delivery,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel=channel,
                recipient=recipient,
                idempotency_key=key,
                content={
                    "title": "医生已接诊",
                    "body": "李明医生已接诊您的问诊。",
                    "link": LINK,
                    "template_id": template_id,
                    "params": params or {"thing1": "李明"},
                    "options": options or {},
                },
            )
        ]
    )
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_official_account_template_sends_the_documented_request(fake, accounts, patient):
    delivery = send("wechat_oa_template", patient, params={"thing1": "李明", "character_string2": "IQ2026"})

    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_message
    (token,) = fake.calls("/cgi-bin/stable_token")
    assert token["body"] == {
        "grant_type": "client_credential",
        "appid": "wx-oa",
        "secret": "s-oa",
        "force_refresh": False,
    }
    (sent,) = fake.calls("/message/template/send")
    assert sent["body"] == {
        "touser": "oOA-p42-openid-0001",
        "template_id": "tmpl-1",
        "data": {"thing1": {"value": "李明"}, "character_string2": {"value": "IQ2026"}},
        "client_msg_id": "k1",
        "url": "https://m.hospital.example/im?id=9001",
    }
    assert delivery.provider_message_id


def test_wechat_refusals_are_final_and_busy_answers_are_retried(fake, accounts, patient):
    fake.script(
        "/wechat/cgi-bin/message/template/send",
        [
            {"json": {"errcode": 43004, "errmsg": "require subscribe hint: [xyz]"}},
            {"json": {"errcode": -1, "errmsg": "system error"}},
        ],
    )

    refused = send("wechat_oa_template", patient, key="a")
    busy = send("wechat_oa_template", patient, key="b")

    assert (refused.status, refused.last_error_code) == (DeliveryStatus.FAILED, "43004")
    assert refused.last_error_message == "require subscribe hint: [xyz]"
    assert refused.attempts.get().raw_response == {"errcode": 43004, "errmsg": "require subscribe hint: [xyz]"}
    assert (busy.status, busy.last_error_code) == (DeliveryStatus.QUEUED, "-1")


def test_an_expired_token_is_refreshed_once_and_the_send_retried_at_once(fake, accounts, patient):
    send("wechat_oa_template", patient, key="a")
    fake.expire_tokens()

    delivery = send("wechat_oa_template", patient, key="b")

    assert delivery.status == DeliveryStatus.SENT
    assert len(fake.calls("/cgi-bin/stable_token")) == 2
    assert len(fake.calls("/message/template/send")) == 3  # a, b refused with 40001, b again
    assert delivery.attempts.count() == 1


def test_two_workers_needing_a_token_at_once_fetch_it_once(fake, accounts, patient):
    fake.script("/wechat/cgi-bin/stable_token", [{}], latency_ms=300)  # a slow token endpoint widens the race
    rows = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="wechat_oa_template",
                recipient=patient,
                idempotency_key=f"r{i}",
                content={"template_id": "t", "params": {"thing1": "x"}, "link": {}},
                not_before=timezone.now() + timedelta(hours=1),  # not enqueued now: the threads send them
            )
            for i in range(4)
        ]
    )
    Delivery.objects.update(not_before=timezone.now())
    threads = [threading.Thread(target=_send_in_thread, args=(d.pk,)) for d in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(fake.calls("/cgi-bin/stable_token")) == 1
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


def _send_in_thread(delivery_id):
    from django.db import connection

    try:
        delivery_send(delivery_id=delivery_id)
    finally:
        connection.close()


def test_subscribe_messages_spend_one_consent_each_and_skip_without(fake, accounts, patient):
    SubscribeConsent.objects.create(recipient=patient, template_id="tmpl-call", remaining=1)

    first = send("wechat_mini_subscribe", patient, key="a", template_id="tmpl-call")
    second = send("wechat_mini_subscribe", patient, key="b", template_id="tmpl-call")

    assert first.status == DeliveryStatus.SENT
    (sent,) = fake.calls("/message/subscribe/send")
    assert sent["body"] == {
        "touser": "oMini-p42-openid-0001",
        "template_id": "tmpl-call",
        "data": {"thing1": {"value": "李明"}},
        "miniprogram_state": "trial",
        "lang": "zh_CN",
        "page": "pages/im/index?inquiryId=9001",
    }
    assert (second.status, second.last_error_code) == (DeliveryStatus.SKIPPED, "no_consent")
    assert SubscribeConsent.objects.get().remaining == 0


def test_a_consent_is_given_back_when_the_send_did_not_happen(fake, accounts, patient):
    SubscribeConsent.objects.create(recipient=patient, template_id="tmpl-call", remaining=1)
    fake.script("/wechat/cgi-bin/message/subscribe/send", [{"status": 502, "json": {"error": "bad gateway"}}])

    delivery = send("wechat_mini_subscribe", patient, template_id="tmpl-call")

    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.QUEUED, "http_502")
    assert SubscribeConsent.objects.get().remaining == 1


def test_parameter_types_are_checked_before_sending():
    assert checked_params({"thing1": "一" * 25}, truncate=True) == {"thing1": {"value": "一" * 19 + "…"}}
    with pytest.raises(InvalidParam, match="thing1"):
        checked_params({"thing1": "一" * 25}, truncate=False)
    for key, value in [
        ("character_string2", "x" * 33),
        ("number3", "12a"),
        ("phrase4", "待接诊中的问诊"),
        ("amount5", "五十元"),
    ]:
        with pytest.raises(InvalidParam, match=key):
            checked_params({key: value}, truncate=True)
    assert checked_params({"amount1": "50.00元", "phrase2": "已接诊", "time3": "2026年11月25日 15:00"}, truncate=False)[
        "phrase2"
    ] == {"value": "已接诊"}


def test_an_invalid_parameter_fails_naming_the_key_without_calling_wechat(fake, accounts, patient):
    delivery = send("wechat_oa_template", patient, params={"character_string1": "x" * 40})

    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.FAILED, "invalid_param")
    assert "character_string1" in delivery.last_error_message
    assert fake.calls("/message/template/send") == []


def test_wecom_robot_posts_markdown_and_backs_off_when_rate_limited(fake, accounts):
    ops = Recipient.objects.create(audience="operations", external_id="ops-duty")
    fake.script("/wecom/cgi-bin/webhook/send", [{}, {"json": {"errcode": 45009, "errmsg": "api freq out of limit"}}])

    first = send("wecom_robot", ops, key="a")
    limited = send("wecom_robot", ops, key="b")

    assert first.status == DeliveryStatus.SENT
    sent = fake.calls("/webhook/send")[0]
    assert sent["query"] == {"key": "k-ops"}
    assert sent["body"] == {
        "msgtype": "markdown",
        "markdown": {
            "content": "**医生已接诊**\n李明医生已接诊您的问诊。\n[查看详情](https://m.hospital.example/im?id=9001)"
        },
    }
    assert (limited.status, limited.last_error_code, limited.last_error_message) == (
        DeliveryStatus.QUEUED,
        "45009",
        "api freq out of limit",
    )


def test_an_unreachable_provider_is_a_transient_failure_in_its_own_words(settings, accounts, patient):
    settings.FAKE_PROVIDERS_URL = "http://127.0.0.1:9"  # nothing listens there

    delivery = send("wechat_oa_template", patient)

    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.QUEUED, "connection_error")
    assert "Connection refused" in delivery.last_error_message


def test_wecom_app_messages_go_to_the_staff_user_with_a_duplicate_check(fake, db):
    sandbox_account("wecom_app")
    staff = Recipient.objects.create(audience="operations", external_id="ops-li", wecom_userid="LiSi")

    delivery = send("wecom_app", staff)
    fake.script("/wecom/cgi-bin/message/send", [{"json": {"errcode": 0, "errmsg": "ok", "invaliduser": "LiSi"}}])
    unknown_user = send("wecom_app", staff, key="k2")

    assert delivery.status == DeliveryStatus.SENT
    (token,) = fake.calls("/cgi-bin/gettoken")
    assert token["query"] == {"corpid": "ww-corp", "corpsecret": "s-corp"}
    sent = fake.calls("/cgi-bin/message/send")[0]["body"]
    assert (sent["touser"], sent["agentid"], sent["msgtype"], sent["enable_duplicate_check"]) == (
        "LiSi",
        1000002,
        "markdown",
        1,
    )
    assert (unknown_user.status, unknown_user.last_error_code) == (DeliveryStatus.FAILED, "invalid_user")


def test_jpush_sends_the_deep_link_and_a_retry_reuses_its_cid(fake, jpush):
    doctor = Recipient.objects.create(audience="doctor", external_id="d-17", push_registration_ids=["1a0018970aa"])
    fake.script("/jpush/v3/push", [{"status": 502, "json": {}}])  # the first try meets a gateway error

    delivery = send("app_push", doctor)
    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.QUEUED, "http_502")
    Delivery.objects.filter(pk=delivery.pk).update(not_before=delivery.created_at)
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()

    assert delivery.status == DeliveryStatus.SENT
    first, second = fake.calls("/v3/push")
    assert first["body"]["cid"] == second["body"]["cid"]  # one cid: JPush pushes once
    assert len(fake.calls("/v3/push/cid")) == 1
    body = second["body"]
    assert body["audience"] == {"registration_id": ["1a0018970aa"]}
    assert body["notification"]["android"]["extras"] == {
        "deep_link": "hospitaldoctor://im?inquiryId=9001",
        "route": "im",
    }
    assert body["notification"]["ios"]["alert"] == {"title": "医生已接诊", "body": "李明医生已接诊您的问诊。"}
    assert body["options"]["apns_production"] is True


def test_jpush_refusals_carry_its_own_words(fake, jpush):
    doctor = Recipient.objects.create(audience="doctor", external_id="d-17", push_registration_ids=["gone"])
    fake.script(
        "/jpush/v3/push",
        [{"status": 400, "json": {"error": {"code": 1011, "message": "cannot find user by this audience"}}}],
    )

    delivery = send("app_push", doctor)

    assert (delivery.status, delivery.last_error_code, delivery.last_error_message) == (
        DeliveryStatus.FAILED,
        "1011",
        "cannot find user by this audience",
    )


def test_the_aliyun_signature_matches_aliyuns_published_example():
    from channels.providers.sms import aliyun_signature

    # The worked example in Aliyun's RPC signature documentation (ECS DescribeRegions).
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert aliyun_signature(params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


@pytest.mark.parametrize(
    "value",
    ["", "SendSms", "2016-02-23T12:46:24Z", "互联网医院", '{"name": "李明", "code": "12 34"}', "a+b/c*d~e%f", "é\n😀"],
)
def test_aliyuns_percent_encoding_is_rfc_3986_as_urllib_quote_says(value):
    from urllib.parse import quote

    from channels.providers.sms import _aliyun_sign, _percent, aliyun_canonical

    assert _percent(value) == quote(value, safe="-_.~")
    # The canonical string encoded again by escaping "%", "=" and "&" only: the same as quote.
    canonical = aliyun_canonical({"A": value, "B": "x=y&z"})
    assert _aliyun_sign(canonical, "s", "POST") == _aliyun_sign_quoted(canonical, "s", "POST")


def _aliyun_sign_quoted(canonical: str, secret: str, method: str) -> str:
    import base64
    import hashlib
    import hmac
    from urllib.parse import quote

    to_sign = f"{method}&%2F&{quote(canonical, safe='-_.~')}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def test_aliyun_sms_is_signed_and_sent_with_its_template_parameters(fake, aliyun):
    doctor = Recipient.objects.create(audience="doctor", external_id="d-17", phone="13812345678")

    delivery = send("sms", doctor, template_id="SMS_123456", params={"name": "张三"})

    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_message
    query = fake.calls("/aliyun/")[0]["body"]
    assert (query["Action"], query["PhoneNumbers"], query["TemplateCode"], query["SignName"]) == (
        "SendSms",
        "13812345678",
        "SMS_123456",
        "互联网医院",
    )
    assert query["TemplateParam"] == '{"name": "张三"}'
    assert delivery.provider_message_id.endswith("^0")


def test_aliyun_refusals_and_flow_control(fake, aliyun):
    person = Recipient.objects.create(audience="doctor", external_id="d-1", phone="12345")
    illegal = send("sms", person, key="a")
    assert (illegal.status, illegal.last_error_code, illegal.last_error_message) == (
        DeliveryStatus.FAILED,
        "isv.MOBILE_NUMBER_ILLEGAL",
        "非法手机号",
    )
    person.phone = "13812345678"
    person.save()
    fake.script("/aliyun/", [{"json": {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}}])
    limited = send("sms", person, key="b")
    assert (limited.status, limited.last_error_code) == (DeliveryStatus.QUEUED, "isv.BUSINESS_LIMIT_CONTROL")
    aliyun.credentials = {"access_key_secret": "wrong"}
    aliyun.save()
    unsigned = send("sms", person, key="c")
    assert (unsigned.status, unsigned.last_error_code) == (DeliveryStatus.FAILED, "SignatureDoesNotMatch")


def test_a_verification_code_slot_with_no_code_behind_it_is_never_sent(fake, aliyun):
    doctor = Recipient.objects.create(audience="doctor", external_id="d-17", phone="13812345678")

    delivery = send("sms", doctor, params={"code": "{code}", "amount": "300.00"})

    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.FAILED, "otp_missing")
    assert fake.calls("/aliyun/") == []
