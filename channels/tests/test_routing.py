"""Provider failover over real HTTP against the fake provider server: Aliyun primary, Tencent
secondary (channels/routing.py)."""

import pytest

from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from channels.routing import circuit_open
from channels.tests.helpers import queued, sandbox_account
from channels.tests.test_providers import send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def accounts(db):
    tencent = sandbox_account(
        "tencent", is_default=False, options={"sign_name": "互联网医院", "region": "ap-guangzhou"}
    )
    aliyun = sandbox_account("aliyun", secondary=tencent)
    return aliyun, tencent


@pytest.fixture
def doctor(db):
    return Recipient.objects.create(audience="doctor", external_id="d-17", phone="13812345678")


def aliyun_answers(fake_providers, *answers):
    fake_providers.script("/aliyun/", [{"json": {"RequestId": "r", **a}} for a in answers])


def test_a_balance_run_out_at_aliyun_fails_over_to_tencent_which_sends_it(fake_providers, accounts, doctor):
    _, tencent = accounts
    aliyun_answers(fake_providers, {"Code": "isv.AMOUNT_NOT_ENOUGH", "Message": "账户余额不足"})

    delivery = send("sms", doctor)  # sent, failed over (queued at once), sent again

    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_message
    assert delivery.account_id == tencent.pk
    assert delivery.route_reason == "failover: aliyun isv.AMOUNT_NOT_ENOUGH"
    assert len(fake_providers.calls("/tencent/")) == 1
    assert [a.error_code for a in delivery.attempts.order_by("number")] == ["isv.AMOUNT_NOT_ENOUGH", ""]


@pytest.mark.parametrize(
    ("code", "words", "status"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1", DeliveryStatus.QUEUED),
        ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", DeliveryStatus.FAILED),
    ],
)
def test_per_number_limits_and_bad_numbers_never_fail_over(fake_providers, accounts, doctor, code, words, status):
    aliyun, _ = accounts
    aliyun_answers(fake_providers, {"Code": code, "Message": words})

    delivery = send("sms", doctor)

    assert (delivery.status, delivery.last_error_code) == (status, code)
    assert delivery.account_id == aliyun.pk
    assert delivery.route_reason == "default"
    assert fake_providers.calls("/tencent/") == []


def test_the_circuit_opens_after_failures_in_a_row_and_closes_after_a_probe(fake_providers, accounts, doctor, settings):
    settings.CIRCUIT_FAILURES, settings.CIRCUIT_COOLDOWN_SECONDS = 2, 0
    aliyun, tencent = accounts
    aliyun_answers(fake_providers, *[{"Code": "isp.SYSTEM_ERROR", "Message": "系统错误"}] * 2)
    first, second = send("sms", doctor, key="a"), send("sms", doctor, key="b")
    assert (first.account_id, second.account_id) == (tencent.pk, tencent.pk)  # both failed over
    assert circuit_open(aliyun.pk)

    settings.CIRCUIT_COOLDOWN_SECONDS = 3600
    during = send("sms", doctor, key="c")
    assert (during.account_id, during.route_reason) == (tencent.pk, "circuit_open: aliyun")

    settings.CIRCUIT_COOLDOWN_SECONDS = 0
    probe = send("sms", doctor, key="d")  # the fake answers OK again: the probe succeeds
    assert (probe.account_id, probe.status) == (aliyun.pk, DeliveryStatus.SENT)
    assert not circuit_open(aliyun.pk)
    after = send("sms", doctor, key="e")
    assert (after.account_id, after.route_reason) == (aliyun.pk, "default")
    assert Delivery.objects.filter(account=tencent).count() == 3


@pytest.mark.django_db  # not transactional: nothing is sent after the (never committed) test
def test_normal_traffic_is_shared_by_weight(accounts, doctor):
    aliyun, tencent = accounts
    ChannelAccount.objects.filter(pk=aliyun.pk).update(weight=1)
    ChannelAccount.objects.filter(pk=tencent.pk).update(weight=3)
    from channels.services import DeliveryRequest, deliveries_create

    rows = deliveries_create(
        requests=[
            DeliveryRequest(channel="sms", recipient=doctor, content={"params": {}}, idempotency_key=f"w{i}")
            for i in range(100)
        ]
    )
    to_tencent = sum(1 for d in rows if d.account_id == tencent.pk)
    assert {d.route_reason for d in rows} == {"weighted"}
    assert 55 < to_tencent < 95  # 75 expected; the bounds are over 4.5 standard deviations wide


def test_a_timeout_is_never_failed_over_until_reconciliation_finds_no_record(fake_providers, accounts, doctor):
    from channels.tests.test_exactly_once import fresh, reconcile_now

    aliyun, tencent = accounts
    fake_providers.script("/aliyun/", [{"drop": True}])  # the connection breaks; Aliyun never saw it
    row = queued("sms", doctor)
    from channels.sending import delivery_send

    delivery_send(delivery_id=row.pk)
    assert (fresh(row).status, fresh(row).account_id) == (DeliveryStatus.UNKNOWN, aliyun.pk)
    assert fake_providers.calls("/tencent/") == []  # it may have reached the person: not elsewhere

    assert reconcile_now(row) == "no_record_resend"  # Aliyun has no record of it
    assert fresh(row).account_id == tencent.pk
    assert fresh(row).route_reason == "failover: aliyun timeout, no record"
    delivery_send(delivery_id=row.pk)

    assert fresh(row).status == DeliveryStatus.SENT
    assert len(fake_providers.calls("/tencent/")) == 1
