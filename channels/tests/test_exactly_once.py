"""Exactly once when things break: the attempt is written before the call, leases instead of a
stuck timeout, and unknown outcomes reconciled per channel, over real HTTP against the fake
providers made to answer after the client's timeout (channels/reconcile.py has the table)."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from channels import providers
from channels.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OtpCode,
    Recipient,
)
from channels.otp import otp_attach, otp_issue
from channels.providers import DeliveryResult
from channels.providers.testing import RecordingBackend
from channels.reconcile import delivery_reconcile
from channels.sending import _claim, _open_attempt, deliveries_requeue_due, delivery_send
from channels.tests.helpers import LATE_MS, queued, sandbox_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("short_timeouts")]


@pytest.fixture
def person(db):
    return Recipient.objects.create(
        audience="patient",
        external_id="p-42",
        phone="13812345678",
        wechat_oa_openid="oOA-p42-openid-0001",
        wechat_mini_openid="oMini-p42-openid-0001",
        push_registration_ids=["1a0018970aa"],
        wecom_userid="zhangsan",
    )


def fresh(d: Delivery) -> Delivery:
    return Delivery.objects.get(pk=d.pk)


def delivered(fake, channel):
    import httpx

    return [d for d in httpx.get(f"{fake.url}/_delivered").json() if d["channel"] == channel]


def reconcile_now(d: Delivery) -> str | None:
    Delivery.objects.filter(pk=d.pk).update(not_before=timezone.now())
    return delivery_reconcile(delivery_id=d.pk)


def test_the_attempt_and_its_key_are_committed_before_the_request_leaves(monkeypatch, person):
    seen = []

    class Peeking(RecordingBackend):
        def provider_key(self, d):
            return d.idempotency_key

        def send(self, d):
            # Another connection, as a crash-recovery scan would see the table.
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            with psycopg.connect(**params) as other:
                seen.extend(
                    other.execute(
                        "SELECT outcome, provider_key FROM channels_deliveryattempt WHERE delivery_id = %s", [d.pk]
                    ).fetchall()
                )
            return super().send(d)

    monkeypatch.setitem(providers.BACKENDS, "app_push", Peeking())
    row = queued("app_push", person)

    delivery_send(delivery_id=row.pk)

    assert seen == [("pending", "k1")]
    attempt = DeliveryAttempt.objects.get(delivery=row)
    assert (attempt.outcome, attempt.provider_key) == ("sent", "k1") and attempt.settled_at is not None


def test_a_worker_killed_mid_call_leaves_an_unknown_delivery_not_a_queued_one(monkeypatch, person):
    from channels import sending

    handed = {"send": [], "reconcile": []}
    monkeypatch.setattr(sending, "enqueue", lambda due: handed["send"].extend(pk for pk, _ in due))
    monkeypatch.setattr(sending, "enqueue_reconcile", lambda ids: handed["reconcile"].extend(ids))
    monkeypatch.setitem(providers.BACKENDS, "app_push", RecordingBackend())
    rows = [queued("app_push", person, key=f"k{i}") for i in range(3)]
    claim, claimed = _claim([r.pk for r in rows])
    assert _open_attempt(claimed[0], claim, "k0", timezone.now()) is not None
    # The worker dies here, with the first call in flight and two members not yet called.
    later = timezone.now() + timedelta(minutes=1)  # after the lease

    deliveries_requeue_due(now=later)

    first, second, third = (fresh(r) for r in rows)
    assert first.status == DeliveryStatus.UNKNOWN and first.finished_at is None
    assert first.attempts.get().outcome == AttemptOutcome.UNKNOWN
    assert first.attempts.get().error_code == "worker_lost"
    # Chunk members never called are queued again at once, not after five minutes.
    assert second.status == third.status == DeliveryStatus.QUEUED
    assert second.attempts.count() == 0
    # Within the same scan: the two sent to workers again, the unknown one to reconciliation.
    assert sorted(handed["send"]) == [second.pk, third.pk]
    assert handed["reconcile"] == [first.pk]


def test_an_answer_that_comes_after_the_lease_ran_out_is_still_the_truth(monkeypatch, person):
    monkeypatch.setitem(providers.BACKENDS, "app_push", RecordingBackend())
    row = queued("app_push", person)
    claim, (claimed,) = _claim([row.pk])
    attempt = _open_attempt(claimed, claim, "k1", timezone.now())
    deliveries_requeue_due(now=timezone.now() + timedelta(minutes=1))  # the scan gave up on us
    assert fresh(row).status == DeliveryStatus.UNKNOWN

    from channels.sending import _settle_claimed

    _settle_claimed(claimed, claim, attempt, DeliveryResult("sent", provider_message_id="m-1"), timezone.now(), 5)

    row = fresh(row)
    assert (row.status, row.provider_message_id) == (DeliveryStatus.SENT, "m-1")
    assert DeliveryAttempt.objects.get(pk=attempt.pk).outcome == "sent"


def test_aliyun_sms_answered_after_the_timeout_is_settled_from_query_send_details(fake_providers, aliyun, person):
    fake_providers.script("/aliyun/", [{"latency_ms": LATE_MS}])
    row = queued("sms", person)

    delivery_send(delivery_id=row.pk)
    assert (fresh(row).status, fresh(row).last_error_code) == (DeliveryStatus.UNKNOWN, "timeout")

    assert reconcile_now(row) == "settle"

    row = fresh(row)
    assert row.status == DeliveryStatus.SENT
    actions = [c["body"]["Action"] for c in fake_providers.calls("/aliyun/")]
    assert actions == ["SendSms", "QuerySendDetails"]  # asked, not resent
    assert len(delivered(fake_providers, "sms")) == 1
    assert [(a.number, a.kind, a.outcome) for a in row.attempts.order_by("number")] == [
        (1, "send", "unknown"),
        (2, "reconcile", "sent"),
    ]


def test_aliyun_sms_with_no_record_is_resent_once_with_the_same_out_id(fake_providers, aliyun, person):
    fake_providers.script("/aliyun/", [{"drop": True}])  # the connection breaks; Aliyun never saw it
    row = queued("sms", person)

    delivery_send(delivery_id=row.pk)
    assert (fresh(row).status, fresh(row).last_error_code) == (DeliveryStatus.UNKNOWN, "connection_lost")
    assert reconcile_now(row) == "no_record_resend"
    delivery_send(delivery_id=row.pk)

    assert fresh(row).status == DeliveryStatus.SENT
    assert [(a.number, a.kind, a.outcome) for a in fresh(row).attempts.order_by("number")] == [
        (1, "send", "unknown"),
        (2, "reconcile", "unknown"),  # "no record: sent again"
        (3, "send", "sent"),
    ]
    sends = [c["body"] for c in fake_providers.calls("/aliyun/") if c["body"]["Action"] == "SendSms"]
    assert [s["OutId"] for s in sends] == ["k1", "k1"]
    assert len(delivered(fake_providers, "sms")) == 1


def test_tencent_sms_answered_late_is_settled_from_its_status_pull(fake_providers, tencent, person):
    fake_providers.script("/tencent/", [{"latency_ms": LATE_MS}])
    row = queued("sms", person, params={"1": "李明"})

    delivery_send(delivery_id=row.pk)
    assert fresh(row).status == DeliveryStatus.UNKNOWN
    assert reconcile_now(row) == "settle"

    assert fresh(row).status == DeliveryStatus.SENT
    assert fresh(row).provider_message_id  # the SerialNo from the report
    assert len(delivered(fake_providers, "sms")) == 1


def test_a_code_sms_answered_late_is_not_sent_again_and_its_sealed_code_goes(fake_providers, aliyun, person):
    with transaction.atomic():
        otp = otp_issue(phone="13812345678", purpose="point.withdrawal_requested")
        otp_attach(otp, event_ref=777)
    fake_providers.script("/aliyun/", [{"latency_ms": LATE_MS}])
    row = queued("sms", person, params={"code": "{code}"}, event_ref=777)

    delivery_send(delivery_id=row.pk)
    assert OtpCode.objects.get(pk=otp.pk).sealed_code  # unknown: kept, in case it must be resent
    reconcile_now(row)

    assert fresh(row).status == DeliveryStatus.SENT
    assert OtpCode.objects.get(pk=otp.pk).sealed_code == ""
    assert [c["body"]["Action"] for c in fake_providers.calls("/aliyun/")].count("SendSms") == 1


def test_a_code_sms_that_fails_for_good_after_retries_erases_its_sealed_code(fake_providers, aliyun, person):
    with transaction.atomic():
        otp = otp_issue(phone="13812345678", purpose="point.withdrawal_requested")
        otp_attach(otp, event_ref=778)
    busy = {"json": {"Code": "isp.SYSTEM_ERROR", "Message": "系统错误", "RequestId": "x"}}
    fake_providers.script("/aliyun/", [busy] * 4)
    row = queued("sms", person, params={"code": "{code}"}, event_ref=778)

    for _ in range(4):
        Delivery.objects.filter(pk=row.pk).update(not_before=timezone.now())
        delivery_send(delivery_id=row.pk)

    assert (fresh(row).status, fresh(row).last_error_code) == (DeliveryStatus.FAILED, "isp.SYSTEM_ERROR")
    assert OtpCode.objects.get(pk=otp.pk).sealed_code == ""


def test_wechat_oa_answered_late_is_resent_with_the_same_client_msg_id(fake_providers, person):
    sandbox_account("oa")
    fake_providers.script("/wechat/cgi-bin/message/template/send", [{"latency_ms": LATE_MS}])
    row = queued("wechat_oa_template", person)

    delivery_send(delivery_id=row.pk)
    assert fresh(row).status == DeliveryStatus.UNKNOWN
    assert reconcile_now(row) == "resend_same_key"
    delivery_send(delivery_id=row.pk)

    assert fresh(row).status == DeliveryStatus.SENT
    sends = fake_providers.calls("/message/template/send")
    assert [s["body"]["client_msg_id"] for s in sends] == ["k1", "k1"]
    assert len(delivered(fake_providers, "wechat_oa_template")) == 1  # WeChat dropped the repeat


def test_wechat_oa_past_the_dedup_window_stays_unknown(fake_providers, person):
    sandbox_account("oa")
    fake_providers.script("/wechat/cgi-bin/message/template/send", [{"latency_ms": LATE_MS}])
    row = queued("wechat_oa_template", person)
    delivery_send(delivery_id=row.pk)
    DeliveryAttempt.objects.filter(delivery=row).update(started_at=timezone.now() - timedelta(minutes=11))

    assert reconcile_now(row) == "dedup_window_passed"

    row = fresh(row)
    assert row.status == DeliveryStatus.UNKNOWN and row.finished_at is not None
    assert len(fake_providers.calls("/message/template/send")) == 1


def test_jpush_answered_late_is_resent_with_the_same_cid(fake_providers, person):
    sandbox_account("jpush")
    fake_providers.script("/jpush/v3/push", [{"latency_ms": LATE_MS}])
    row = queued("app_push", person)

    delivery_send(delivery_id=row.pk)
    assert reconcile_now(row) == "resend_same_key"
    delivery_send(delivery_id=row.pk)

    assert fresh(row).status == DeliveryStatus.SENT
    pushes = fake_providers.calls("/jpush/v3/push")
    assert len({p["body"]["cid"] for p in pushes}) == 1 and len(pushes) == 2
    assert len(fake_providers.calls("/v3/push/cid")) == 1
    assert fresh(row).attempts.order_by("number").first().provider_key == pushes[0]["body"]["cid"]
    assert len(delivered(fake_providers, "app_push")) == 1


def test_mini_program_and_robot_outcomes_that_cannot_be_asked_stay_unknown(fake_providers, person):
    sandbox_account("mini")
    sandbox_account("robot")
    person.consents.create(template_id="tmpl-1", remaining=2)
    fake_providers.script("/wechat/cgi-bin/message/subscribe/send", [{"latency_ms": LATE_MS}])
    fake_providers.script("/wecom/cgi-bin/webhook/send", [{"latency_ms": LATE_MS}])
    mini, robot = queued("wechat_mini_subscribe", person, "m1"), queued("wecom_robot", person, "r1")

    for row in (mini, robot):
        delivery_send(delivery_id=row.pk)
        assert reconcile_now(row) == "no_way_to_ask"
        row = fresh(row)
        assert row.status == DeliveryStatus.UNKNOWN and row.finished_at is not None

    assert len(fake_providers.calls("/subscribe/send")) == 1
    assert len(fake_providers.calls("/webhook/send")) == 1
    assert person.consents.get().remaining == 1  # the consent WeChat may have used stays used


def test_at_least_once_bindings_are_resent_when_the_provider_cannot_be_asked(fake_providers, person):
    sandbox_account("robot")
    fake_providers.script("/wecom/cgi-bin/webhook/send", [{"drop": True}])
    row = queued("wecom_robot", person, options={"at_least_once": True})

    delivery_send(delivery_id=row.pk)
    assert reconcile_now(row) == "resend_at_least_once"
    delivery_send(delivery_id=row.pk)

    assert fresh(row).status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    ("path", "answer", "waits_for_tomorrow"),
    [
        (
            "/wechat/cgi-bin/message/template/send",
            {"errcode": 45009, "errmsg": "reach max api daily quota limit"},
            True,
        ),
        ("/aliyun/", {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发天级流控Permits:10"}, True),
        ("/aliyun/", {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}, False),
    ],
)
def test_a_daily_quota_is_not_retried_the_same_day(fake_providers, aliyun, person, path, answer, waits_for_tomorrow):
    from zoneinfo import ZoneInfo

    sandbox_account("oa")
    fake_providers.script(path, [{"json": answer}])
    row = queued("wechat_oa_template" if "wechat" in path else "sms", person)

    delivery_send(delivery_id=row.pk)

    row = fresh(row)
    assert row.status == DeliveryStatus.QUEUED
    china = ZoneInfo("Asia/Shanghai")
    next_day = row.not_before.astimezone(china).date() > timezone.now().astimezone(china).date()
    assert next_day == waits_for_tomorrow


def test_a_duplicate_answer_points_at_the_delivery_it_repeated(monkeypatch, person):
    first = queued("app_push", person, key="first")
    monkeypatch.setitem(
        providers.BACKENDS,
        "app_push",
        RecordingBackend(
            DeliveryResult("deduplicated", "dup", "repeat of an earlier message", duplicate_key="first"),
            DeliveryResult("deduplicated", "dup", "repeat of our own earlier try", duplicate_key="second"),
        ),
    )
    Delivery.objects.filter(pk=first.pk).update(status=DeliveryStatus.SENT)
    second = queued("app_push", person, key="second")
    third = queued("app_push", person, key="third")

    delivery_send(delivery_id=third.pk)
    delivery_send(delivery_id=second.pk)

    third = fresh(third)
    # third's call was answered "repeat of first's message"; second's "repeat of second's own key".
    assert (third.status, third.duplicate_of_id) == (DeliveryStatus.DEDUPLICATED, first.pk)
    assert fresh(second).status == DeliveryStatus.SENT  # a repeat of itself went out before
