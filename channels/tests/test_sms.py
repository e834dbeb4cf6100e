"""Tencent Cloud SMS over real HTTP against the fake provider server, whose TC3 check is proven
against Tencent's own SDK signing a request to it."""

import json

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from channels.models import ChannelAccount, DeliveryStatus, Recipient
from channels.tests.helpers import sandbox_account
from channels.tests.test_providers import send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tencent(db):
    return sandbox_account("tencent", options={"sign_name": "互联网医院", "region": "ap-guangzhou"})


@pytest.fixture
def doctor(db):
    return Recipient.objects.create(audience="doctor", external_id="d-17", phone="13812345678")


def sdk_client(url: str, secret_key: str) -> CommonClient:
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=url.removeprefix("http://")))
    return CommonClient(
        "sms", "2021-01-11", credential.Credential("sandbox-secret-id", secret_key), "ap-guangzhou", profile
    )


SDK_REQUEST = {
    "PhoneNumberSet": ["+8613812345678"],
    "SmsSdkAppId": "1400000000",
    "TemplateId": "1110",
    "SignName": "互联网医院",
    "TemplateParamSet": ["张三"],
}


def test_the_fake_checks_tc3_signatures_exactly_as_tencents_sdk_makes_them(fake_providers):
    answer = sdk_client(fake_providers.url, "sandbox-secret-key").call_json("SendSms", SDK_REQUEST)
    assert answer["Response"]["SendStatusSet"][0]["Code"] == "Ok"

    refused = sdk_client(fake_providers.url, "another-key").call_json("SendSms", SDK_REQUEST)
    assert refused["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_tencent_sms_sends_the_documented_request(fake_providers, tencent, doctor):
    delivery = send("sms", doctor, template_id="1110", params={"name": "张三", "time": "15:00"})

    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_message
    (call,) = fake_providers.calls("/tencent/")
    assert call["method"] == "POST"
    assert call["body"] == {
        "PhoneNumberSet": ["+8613812345678"],
        "SmsSdkAppId": "1400000000",
        "TemplateId": "1110",
        "SignName": "互联网医院",
        "TemplateParamSet": ["张三", "15:00"],  # positional, in the binding's order
        "SessionContext": delivery.idempotency_key,
    }
    assert delivery.provider_message_id and ":" in delivery.provider_message_id  # the SerialNo


@pytest.mark.parametrize(
    ("scripted", "status", "code"),
    [
        (
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            DeliveryStatus.QUEUED,
            "LimitExceeded.PhoneNumberThirtySecondLimit",
        ),
        ("LimitExceeded.PhoneNumberDailyLimit", DeliveryStatus.QUEUED, "LimitExceeded.PhoneNumberDailyLimit"),
        (
            "FailedOperation.TemplateIncorrectOrUnapproved",
            DeliveryStatus.FAILED,
            "FailedOperation.TemplateIncorrectOrUnapproved",
        ),
        (
            "FailedOperation.InsufficientBalanceInSmsPackage",
            DeliveryStatus.FAILED,
            "FailedOperation.InsufficientBalanceInSmsPackage",
        ),
        ("InternalError.Timeout", DeliveryStatus.QUEUED, "InternalError.Timeout"),
    ],
)
def test_tencent_per_number_codes_wait_or_fail_with_tencents_words(
    fake_providers, tencent, doctor, scripted, status, code
):
    words = f"{scripted}: 腾讯云的原话"
    fake_providers.script(
        "/tencent/",
        [
            {
                "json": {
                    "Response": {
                        "SendStatusSet": [
                            {
                                "SerialNo": "",
                                "PhoneNumber": "+8613812345678",
                                "Fee": 0,
                                "SessionContext": "",
                                "Code": scripted,
                                "Message": words,
                                "IsoCode": "CN",
                            }
                        ],
                        "RequestId": "r-1",
                    }
                }
            }
        ],
    )
    delivery = send("sms", doctor)
    assert (delivery.status, delivery.last_error_code, delivery.last_error_message) == (status, code, words)


def test_tencent_refusals_of_the_whole_request(fake_providers, tencent, doctor):
    doctor.phone = "12345"
    doctor.save()
    bad_number = send("sms", doctor, key="a")
    assert (bad_number.status, bad_number.last_error_code, bad_number.last_error_message) == (
        DeliveryStatus.FAILED,
        "InvalidParameterValue.IncorrectPhoneNumber",
        "incorrect number format",
    )
    doctor.phone = "13812345678"
    doctor.save()
    tencent.credentials = {"secret_id": "sandbox-secret-id", "secret_key": "wrong"}
    tencent.save()
    unsigned = send("sms", doctor, key="b")
    assert (unsigned.status, unsigned.last_error_code) == (DeliveryStatus.FAILED, "AuthFailure.SignatureFailure")
    attempt = unsigned.attempts.get()
    assert json.dumps(attempt.raw_response, ensure_ascii=False).count("AuthFailure.SignatureFailure") == 1


def test_an_unknown_sms_provider_fails_loudly(fake_providers, tencent, doctor):
    ChannelAccount.objects.filter(pk=tencent.pk).update(provider="builtin")
    delivery = send("sms", doctor)
    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.FAILED, "provider_not_supported")
