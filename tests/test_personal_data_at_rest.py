"""Personal data kept once: after the README's flows (a directory entry put, events with ids
and with inline addresses, an SMS code), sent over real HTTP to the fake providers, no table
holds a phone or an openid in clear; the providers got the real addresses; a person is found
by phone or openid through the keyed hashes, exported and erased."""

import json

import pytest
from django.core.management import call_command
from django.db import connection

from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from tests.clients import backend_client
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "13912345678"
CODE_PHONE = "13787654321"
MINI = "oMini-p42-openid-at-rest"
OA = "oOA-p42-openid-at-rest"
UNIONID = "oUnion-p42-at-rest"
PUSH = "190e35f7e0a1b2c3d4e"
DOCTOR_PUSH = "1a0018970af2d7e5c01"
DOCTOR_WECOM = "LiMing-at-rest"
INLINE_OA = "oOA-p43-inline-at-rest"
SECRETS = (PHONE, CODE_PHONE, MINI, OA, UNIONID, PUSH, DOCTOR_PUSH, DOCTOR_WECOM, INLINE_OA)


@pytest.fixture
def accounts(fake_providers):
    common = {"is_default": True, "sandbox": True}
    ChannelAccount.objects.create(
        name="tencent",
        channel="sms",
        provider="tencent",
        app_id="1400000000",
        credentials={"secret_id": "sandbox-secret-id", "secret_key": "sandbox-secret-key"},
        options={"sign_name": "互联网医院", "region": "ap-guangzhou"},
        **common,
    )
    ChannelAccount.objects.create(
        name="oa",
        channel="wechat_oa_template",
        provider="wechat",
        app_id="wx-oa",
        credentials={"app_secret": "s-oa"},
        **common,
    )
    ChannelAccount.objects.create(
        name="jpush",
        channel="app_push",
        provider="jpush",
        app_id="app-key",
        credentials={"master_secret": "m-secret"},
        **common,
    )
    ChannelAccount.objects.create(
        name="wecom-app",
        channel="wecom_app",
        provider="wecom",
        app_id="ww-corp",
        credentials={"corp_secret": "s-corp"},
        options={"agentid": 1000002},
        **common,
    )
    return fake_providers


def text_columns() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        )
        return cursor.fetchall()


def found_in_clear(values) -> list[str]:
    """Every table.column holding one of these values, in any text, varchar or JSON column."""
    hits = []
    with connection.cursor() as cursor:
        for table, column in text_columns():
            for value in values:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s',  # noqa: S608 (schema names)
                    [f"%{value}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column}: {value}")
    return hits


def run_the_readme_flows(api):
    put = api.put(
        "/api/v1/recipients/patient/p-42",
        {
            "name": "张三",
            "phone": PHONE,
            "wechat_mini_openid": MINI,
            "wechat_oa_openid": OA,
            "wechat_unionid": UNIONID,
            "push_registration_ids": [PUSH],
        },
        format="json",
    )
    assert put.status_code in (200, 201), put.json()
    doctor = {"wecom_userid": DOCTOR_WECOM, "push_registration_ids": [DOCTOR_PUSH]}
    assert api.put("/api/v1/recipients/doctor/d-17", doctor, format="json").status_code in (200, 201)
    assert api.post("/api/v1/events", paid_event(), format="json").status_code == 202
    accepted = {
        "event": "inquiry.accepted",
        "idempotency_key": "order-IQ202611250001-accepted",
        "data": {"inquiry_id": "9001", "order_no": "IQ202611250001", "doctor_name": "李明", "department": "心内科"},
        "recipients": {"patient": ["p-42", {"id": "p-43", "wechat_oa_openid": INLINE_OA}]},
    }
    answer = api.post("/api/v1/events", accepted, format="json")
    assert answer.status_code == 202, answer.json()
    code = api.post(
        "/api/v1/otp",
        {"phone": CODE_PHONE, "purpose": "point.withdrawal_requested", "data": {"withdrawal_id": "W1", "amount": "3"}},
        format="json",
    )
    assert code.status_code == 201, code.json()


def test_no_table_holds_a_phone_or_an_openid_in_clear_after_the_readme_flows(catalog, accounts):
    run_the_readme_flows(backend_client(scopes=("events", "recipients", "otp")))

    # The providers got the real addresses, filled in from the directory at send time.
    calls = json.dumps([c["body"] for c in accounts.calls()], ensure_ascii=False)
    for value in (OA, INLINE_OA, f"+86{CODE_PHONE}", DOCTOR_PUSH):
        assert value in calls, value
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT).exclude(channel="inbox")
    assert {"wechat_oa_template", "sms", "app_push"} <= set(sent.values_list("channel", flat=True))
    # Tencent's answer names the phone: the attempt keeps it masked.
    assert "+86137****4321" in json.dumps(list(sent.filter(channel="sms").values_list("attempts__raw_response")))

    assert found_in_clear(SECRETS) == []
    shown = dict(Delivery.objects.filter(channel="wechat_oa_template").values_list("recipient__external_id", "address"))
    assert shown == {"p-42": "oOA-****rest", "p-43": "oOA-****rest"}


def test_a_person_is_found_by_phone_or_openid_exported_and_erased(catalog, accounts, capsys):
    run_the_readme_flows(backend_client(scopes=("events", "recipients", "otp")))

    call_command("person", "export", "--phone", f"+86{PHONE}")
    exported = json.loads(capsys.readouterr().out)
    assert list(exported) == ["patient:p-42"]
    assert exported["patient:p-42"]["directory"]["phone"] == PHONE  # in full: it is for the person
    assert exported["patient:p-42"]["directory"]["wechat_oa_openid"] == OA

    call_command("person", "export", "--phone", CODE_PHONE)  # the entry the code went to
    assert [k.split(":")[1][:4] for k in json.loads(capsys.readouterr().out)] == ["otp-"]

    call_command("person", "erase", "--openid", OA, "--yes")
    assert json.loads(capsys.readouterr().out)["erased"] == "patient:p-42"
    person = Recipient.objects.get(audience="patient", external_id="p-42")
    assert (person.phone, person.wechat_oa_openid, person.phone_hash, person.wechat_oa_openid_hash) == ("", "", "", "")
    with pytest.raises(Exception, match="No data about that phone"):
        call_command("person", "export", "--phone", PHONE)
