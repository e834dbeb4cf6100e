"""SMS codes (catalog row 15): POST /api/v1/otp and /api/v1/otp/verify, sent over real HTTP to the
fake Aliyun, with the code read back only from what the fake provider received."""

import json
import logging
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from channels.models import ChannelAccount, Delivery, DeliveryAttempt, DeliveryStatus, OtpCode
from scenarios.models import Event, Message
from tests.clients import backend_client

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "13812345678"
PURPOSE = "point.withdrawal_requested"
DATA = {"withdrawal_id": "W20261125001", "amount": "300.00"}


@pytest.fixture
def api(catalog):
    return backend_client(client="his", scopes=("otp",))


@pytest.fixture
def aliyun(fake_providers):
    ChannelAccount.objects.create(
        name="aliyun",
        channel="sms",
        provider="aliyun",
        app_id="sandbox-access-key",
        is_default=True,
        sandbox=True,
        credentials={"access_key_secret": "sandbox-access-secret"},
        options={"sign_name": "互联网医院"},
    )
    return fake_providers


def ask(api, phone=PHONE, purpose=PURPOSE, data=None):
    return api.post("/api/v1/otp", {"phone": phone, "purpose": purpose, "data": data or DATA}, format="json")


def verify(api, code, phone=PHONE, purpose=PURPOSE):
    return api.post("/api/v1/otp/verify", {"phone": phone, "purpose": purpose, "code": code}, format="json")


def code_received_by(fake) -> str:
    """The code as the SMS provider got it: the only place it exists in clear."""
    return json.loads(fake.calls("/aliyun/")[-1]["body"]["TemplateParam"])["code"]


def test_a_code_is_sent_once_stored_only_as_a_hash_and_accepted_once(api, aliyun, caplog):
    caplog.set_level(logging.DEBUG)
    answer = ask(api)
    assert answer.status_code == 201, answer.json()
    code = code_received_by(aliyun)
    assert len(code) == 6 and code.isdigit()
    query = aliyun.calls("/aliyun/")[-1]["body"]
    assert (query["PhoneNumbers"], query["TemplateCode"]) == (PHONE, "SMS_SANDBOX_0002")
    assert json.loads(query["TemplateParam"])["amount"] == "300.00"

    body = answer.json()
    assert code not in json.dumps(body) and body["phone"] == "138****5678"
    otp = OtpCode.objects.get()
    assert (otp.phone, otp.event_ref, otp.sealed_code) == ("138****5678", body["event_id"], "")  # erased once sent
    delivery = Delivery.objects.get(channel="sms")
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.content["params"]["code"] == "{code}"
    # Nowhere we keep it: not the delivery, the attempts, the message, the event, the log.
    for model in (Delivery, DeliveryAttempt, Message, Event, OtpCode):
        assert code not in repr(list(model.objects.values_list())), model
    assert code not in caplog.text

    wrong = "000000" if code != "000000" else "111111"
    refused = verify(api, wrong)
    assert refused.status_code == 400
    assert refused.json() == {
        "code": "otp_invalid",
        "message": "Wrong code; 4 tries left.",
        "fields": {"code": ["wrong, 4 tries left"]},
    }
    assert verify(api, code).json() == {"verified": True}
    again = verify(api, code)
    assert (again.status_code, again.json()["code"]) == (400, "otp_used")


def test_five_wrong_tries_lock_the_code(api, aliyun):
    ask(api)
    code = code_received_by(aliyun)
    wrong = "000000" if code != "000000" else "111111"
    codes = [verify(api, wrong).json()["code"] for _ in range(5)]
    assert codes == ["otp_invalid"] * 4 + ["otp_locked"]
    assert verify(api, code).json()["code"] == "otp_locked"
    assert OtpCode.objects.get().failed_tries == 5


def test_a_code_expires_after_five_minutes(api, aliyun):
    ask(api)
    code = code_received_by(aliyun)
    otp = OtpCode.objects.get()
    assert timedelta(minutes=4, seconds=59) < otp.expires_at - otp.created_at <= timedelta(minutes=5)
    OtpCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert verify(api, code).json()["code"] == "otp_expired"


def test_a_new_code_replaces_the_old_one(api, aliyun):
    ask(api)
    first = code_received_by(aliyun)
    OtpCode.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    ask(api)
    second = code_received_by(aliyun)
    if first != second:
        assert verify(api, first).json()["code"] == "otp_invalid"
    assert verify(api, second).json() == {"verified": True}


def test_per_phone_limits_one_a_minute_five_an_hour_ten_a_day(api, aliyun):
    assert ask(api).status_code == 201
    second = ask(api)
    assert second.status_code == 429
    assert second.json()["code"] == "otp_rate_limited"
    assert 1 <= int(second["Retry-After"]) <= 61
    assert ask(api, phone="13900000000").status_code == 201  # another phone is not held up

    now = timezone.now()
    OtpCode.objects.all().delete()
    for minutes in (2, 10, 20, 30, 40):  # five in the last hour
        OtpCode.objects.create(
            phone_hash=_hash(PHONE),
            purpose=PURPOSE,
            code_hash="x",
            expires_at=now,
            created_at=now - timedelta(minutes=minutes),
        )
    hourly = ask(api)
    assert (hourly.status_code, hourly.json()["code"]) == (429, "otp_rate_limited")
    assert 1150 <= int(hourly["Retry-After"]) <= 1261  # when the one from 40 minutes ago is an hour old

    OtpCode.objects.all().delete()
    for hours in range(2, 12):  # ten today, none in the last hour
        OtpCode.objects.create(
            phone_hash=_hash(PHONE),
            purpose=PURPOSE,
            code_hash="x",
            expires_at=now,
            created_at=now - timedelta(hours=hours),
        )
    daily = ask(api)
    assert (daily.status_code, daily.json()["fields"]) == (429, {"phone": ["limit 10/86400s reached"]})
    OtpCode.objects.filter(created_at__lt=now - timedelta(hours=10, minutes=30)).delete()
    freed = ask(api)
    assert freed.status_code == 201, freed.json()


def _hash(phone):
    from channels.otp import phone_digest

    return phone_digest(phone)


def test_two_requests_at_once_for_one_phone_send_one_code(api, aliyun):
    from django.db import close_old_connections

    statuses = []

    def one():
        try:
            statuses.append(ask(backend_client(client="his", scopes=("otp",))).status_code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [429] * 5
    assert OtpCode.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"phone": "12345", "purpose": PURPOSE, "data": DATA}, 400, "invalid", "phone"),
        ({"phone": PHONE, "purpose": "no.such", "data": DATA}, 400, "unknown_purpose", "purpose"),
        ({"phone": PHONE, "purpose": "inquiry.paid", "data": DATA}, 400, "not_a_code_purpose", "purpose"),
        ({"phone": PHONE, "purpose": PURPOSE, "data": {"withdrawal_id": "W1"}}, 400, "invalid_data", "data.amount"),
    ],
)
def test_bad_requests_change_nothing(api, aliyun, body, status, code, field):
    answer = api.post("/api/v1/otp", body, format="json")
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.json()
    assert field in answer.json()["fields"]
    assert (OtpCode.objects.count(), Event.objects.count(), Delivery.objects.count()) == (0, 0, 0)
    assert aliyun.calls("/aliyun/") == []


def test_a_transient_failure_keeps_the_code_for_the_retry(api, aliyun):
    from channels.sending import delivery_send

    aliyun.script("/aliyun/", [{"status": 503, "json": {"Code": "ServiceUnavailable", "Message": "busy"}}])
    ask(api)
    delivery = Delivery.objects.get(channel="sms")
    assert (delivery.status, delivery.last_error_code) == (DeliveryStatus.QUEUED, "http_503")
    assert OtpCode.objects.get().sealed_code  # still sealed, waiting for the retry
    Delivery.objects.filter(pk=delivery.pk).update(not_before=timezone.now())
    delivery_send(delivery_id=delivery.pk)
    code = code_received_by(aliyun)
    assert verify(api, code).json() == {"verified": True}
    assert OtpCode.objects.get().sealed_code == ""


def test_the_code_endpoints_need_the_otp_scope(catalog):
    events_only = backend_client(client="his", scopes=("events",))
    assert ask(events_only).json()["code"] == "missing_scope"
    assert verify(events_only, "123456").json()["code"] == "missing_scope"


def test_old_codes_are_purged_after_thirty_days(db):
    from channels.tasks import purge_otp_codes

    now = timezone.now()
    for days in (1, 29, 31, 40):
        OtpCode.objects.create(
            phone_hash="h", purpose=PURPOSE, code_hash="x", expires_at=now, created_at=now - timedelta(days=days)
        )
    assert purge_otp_codes() == 2
    assert OtpCode.objects.count() == 2


def test_a_phone_with_or_without_plus_86_is_one_phone(api, aliyun):
    assert ask(api, phone="+86" + PHONE).status_code == 201
    assert aliyun.calls("/aliyun/")[-1]["body"]["PhoneNumbers"] == PHONE
    again = ask(api)  # the same phone, spelled without +86: the per-minute limit holds
    assert (again.status_code, again.json()["code"]) == (429, "otp_rate_limited")
    assert verify(api, code_received_by(aliyun)).json() == {"verified": True}


def test_the_last_try_left_is_said_in_the_singular(api, aliyun, settings):
    settings.OTP_MAX_TRIES = 2
    assert ask(api).status_code == 201
    code = code_received_by(aliyun)
    refused = verify(api, "000000" if code != "000000" else "111111")
    assert refused.json()["message"] == "Wrong code; 1 try left."
