"""Provider-side batching (channels/flight.py `batches`): identical Tencent SMS go up to 200
numbers a SendSms, each person still a delivery of their own (own attempt, own result, own
reconcile), over real HTTP against the fake Tencent, which refuses what Tencent refuses."""

from datetime import timedelta

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from channels import flight
from channels.models import AttemptOutcome, ChannelAccount, Delivery, DeliveryAttempt, DeliveryStatus, Recipient
from channels.otp import CODE_SLOT, otp_attach, otp_issue
from channels.providers.http import drive
from channels.providers.sms import SmsBackend
from channels.reconcile import delivery_reconcile
from channels.services import DeliveryRequest, deliveries_create
from channels.tests.helpers import LATE_MS, take_back_first_claimed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("short_timeouts")]
SEND_SMS = "/tencent/"


def people(n: int, start: int = 0) -> list[Recipient]:
    return Recipient.objects.bulk_create(
        [Recipient(audience="patient", external_id=f"p-{i}", phone=f"138{i:08d}") for i in range(start, start + n)]
    )


def queued(persons, account, *, params=None, template="1110", prefix="k", event_refs=None) -> list[Delivery]:
    """Due deliveries (created not due, so that no eager worker sends them before the test does)."""
    rows = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="sms",
                recipient=person,
                idempotency_key=f"{prefix}{i}",
                account=account,
                event_ref=event_refs[i] if event_refs else None,
                not_before=timezone.now() + timedelta(hours=1),
                content={"template_id": template, "params": params or {"name": "李明", "time": "15:00"}},
            )
            for i, person in enumerate(persons)
        ]
    )
    Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(not_before=timezone.now())
    return rows


def fresh(rows) -> list[Delivery]:
    return list(Delivery.objects.filter(pk__in=[r.pk for r in rows]).order_by("pk"))


def sends(fake) -> list[dict]:
    """The SendSms requests the fake received (`fake`: the test's FakeProviders, or its URL)."""
    calls = httpx.get(f"{fake}/_calls").json() if isinstance(fake, str) else fake.calls(SEND_SMS)
    return [c["body"] for c in calls if c["path"].endswith(SEND_SMS) and "PhoneNumberSet" in (c["body"] or {})]


def attempt(delivery) -> DeliveryAttempt:
    return DeliveryAttempt.objects.filter(delivery=delivery, kind="send").latest("number")


def test_identical_sms_go_200_numbers_a_request_each_with_its_own_serial(
    settings, fake_providers, tencent, django_assert_max_num_queries
):
    # Three 200-number answers from the fake in this process on a busy machine: more than 0.3 s.
    settings.PROVIDER_TIMEOUT = (1.0, 10.0)
    rows = queued(people(450), tencent)

    # The chunk's statements do not grow with its batches (claim, load, its accounts, open; settle in six).
    with django_assert_max_num_queries(10):
        assert flight.chunk_send([r.pk for r in rows]) == 450

    calls = sends(fake_providers)
    # ceil(450 / 200) requests, in flight together: the fake may take them in any order.
    assert sorted((len(c["PhoneNumberSet"]) for c in calls), reverse=True) == [200, 200, 50]
    got = fresh(rows)
    assert {d.status for d in got} == {DeliveryStatus.SENT}
    serials = [d.provider_message_id for d in got]
    assert all(serials) and len(set(serials)) == 450  # each its own SerialNo
    # Each member's attempt carries its batch's SessionContext, the one its number went with.
    session_of = {phone: c["SessionContext"] for c in calls for phone in c["PhoneNumberSet"]}
    for d in got:
        a = attempt(d)
        assert a.outcome == AttemptOutcome.SENT and a.provider_key == session_of[f"+86{d.recipient.phone}"]
        assert a.provider_key.startswith("b:") and a.raw_response["Response"]["SendStatusSet"][0]["SerialNo"]
    # A member keeps only its own status: no other person's number on its attempt.
    assert len(attempt(got[0]).raw_response["Response"]["SendStatusSet"]) == 1
    assert len({c["SessionContext"] for c in calls}) == 3
    assert len(fake_providers.delivered("sms")) == 450


def test_one_bad_number_fails_only_its_own_delivery(fake_providers, tencent):
    persons = people(4)
    Recipient.objects.filter(pk=persons[2].pk).update(phone="1380000")  # too short: Tencent refuses it
    persons[2].refresh_from_db()
    rows = queued(persons, tencent)

    flight.chunk_send([r.pk for r in rows])

    assert len(sends(fake_providers)) == 1
    got = fresh(rows)
    assert [d.status for d in got] == ["sent", "sent", "failed", "sent"]
    assert got[2].last_error_code == "InvalidParameterValue.IncorrectPhoneNumber" and not got[2].provider_message_id
    assert all(d.provider_message_id for i, d in enumerate(got) if i != 2)


def test_a_batch_answered_late_is_unknown_and_each_member_reconciles_by_its_own_number(fake_providers, tencent):
    fake_providers.script(SEND_SMS, [{"latency_ms": LATE_MS}])  # acted on, answered after our timeout
    rows = queued(people(5), tencent)

    flight.chunk_send([r.pk for r in rows])

    assert {d.status for d in fresh(rows)} == {DeliveryStatus.UNKNOWN}
    (call,) = sends(fake_providers)
    for d in fresh(rows):
        Delivery.objects.filter(pk=d.pk).update(not_before=timezone.now())
        assert delivery_reconcile(delivery_id=d.pk) == "settle"  # its status report, found by number and batch

    got = fresh(rows)
    assert {d.status for d in got} == {DeliveryStatus.SENT}
    assert len(sends(fake_providers)) == 1  # nothing sent again
    # Each settled from its own report: the serial the fake gave its number.
    reached = {d["phone"]: d for d in fake_providers.delivered("sms")}
    assert len(reached) == 5 == len(fake_providers.delivered("sms"))
    pulled = [c["body"] for c in fake_providers.calls(SEND_SMS) if "PhoneNumber" in (c["body"] or {})]
    assert sorted(p["PhoneNumber"] for p in pulled) == sorted(call["PhoneNumberSet"])
    assert len({d.provider_message_id for d in got}) == 5


def test_a_batch_with_no_record_is_resent_in_a_new_batch_and_found_by_that_one(monkeypatch, fake_providers, tencent):
    from channels import reconcile

    monkeypatch.setattr(reconcile, "enqueue", lambda due: None)  # the resend is this test's chunk
    fake_providers.script(SEND_SMS, [{"drop": True}])  # the connection breaks before Tencent acts
    rows = queued(people(3), tencent)
    flight.chunk_send([r.pk for r in rows])
    assert {d.status for d in fresh(rows)} == {DeliveryStatus.UNKNOWN}

    for d in rows:
        Delivery.objects.filter(pk=d.pk).update(not_before=timezone.now())
        assert delivery_reconcile(delivery_id=d.pk) == "no_record_resend"
    Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(not_before=timezone.now())
    flight.chunk_send([r.pk for r in rows])

    got = fresh(rows)
    assert {d.status for d in got} == {DeliveryStatus.SENT}
    first, second = sends(fake_providers)
    assert len(first["PhoneNumberSet"]) == len(second["PhoneNumberSet"]) == 3
    assert first["SessionContext"] != second["SessionContext"]  # a new batch, a new SessionContext
    assert {attempt.provider_key for attempt in DeliveryAttempt.objects.filter(kind="send", outcome="sent")} == {
        second["SessionContext"]
    }
    assert len(fake_providers.delivered("sms")) == 3


def test_the_fake_refuses_more_than_200_numbers_as_tencent_does(fake_providers, tencent):
    persons = [Delivery(account=tencent, address=f"138{i:08d}", idempotency_key=f"k{i}") for i in range(201)]
    for d in persons:
        d.content = {"template_id": "1110", "params": {"name": "李明"}}

    results = drive(SmsBackend().send_batch_steps(persons, "b:k0:test"))

    assert {(r.outcome, r.code) for r in results} == {(AttemptOutcome.PERMANENT, "LimitExceeded.PhoneNumberCountLimit")}
    assert fake_providers.delivered("sms") == []  # refused whole: nothing sent


def test_codes_and_different_content_are_never_batched(fake_providers, tencent):
    persons = people(7)
    with transaction.atomic():
        codes = [otp_issue(phone=p.phone, purpose="login") for p in persons[:3]]
        for i, otp in enumerate(codes):
            otp_attach(otp, event_ref=9000 + i)
    rows = [
        *queued(persons[:3], tencent, params={"code": CODE_SLOT}, prefix="otp", event_refs=[9000, 9001, 9002]),
        *queued(persons[3:5], tencent, params={"name": "李明"}, prefix="a"),
        queued(persons[5:6], tencent, params={"name": "王芳"}, prefix="b")[0],
        queued(persons[6:7], tencent, params={"name": "李明"}, template="2220", prefix="c")[0],
    ]

    flight.chunk_send([r.pk for r in rows])

    assert {d.status for d in fresh(rows)} == {DeliveryStatus.SENT}
    numbers = sorted(len(c["PhoneNumberSet"]) for c in sends(fake_providers))
    assert numbers == [1, 1, 1, 1, 1, 2]  # each code alone; only the two identical ones together
    code_calls = [c for c in sends(fake_providers) if c["SessionContext"].startswith("otp")]
    assert len({c["TemplateParamSet"][0] for c in code_calls}) == 3  # each its own code


def test_two_deliveries_to_one_number_never_share_a_request(fake_providers, tencent):
    persons = people(3)
    rows = [*queued(persons, tencent, prefix="a"), *queued(persons[:1], tencent, prefix="again")]

    flight.chunk_send([r.pk for r in rows])

    calls = sends(fake_providers)
    assert sorted(len(c["PhoneNumberSet"]) for c in calls) == [1, 3]
    assert all(len(set(c["PhoneNumberSet"])) == len(c["PhoneNumberSet"]) for c in calls)
    assert {d.status for d in fresh(rows)} == {DeliveryStatus.SENT}
    assert len(fake_providers.delivered("sms")) == 4


def test_a_request_level_error_is_every_members_result(fake_providers, tencent):
    busy = {"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "请求频率超过限制"}, "RequestId": "r"}}
    fake_providers.script(SEND_SMS, [{"json": busy}])
    rows = queued(people(3), tencent)

    flight.chunk_send([r.pk for r in rows])

    got = fresh(rows)
    assert {(d.status, d.last_error_code) for d in got} == {(DeliveryStatus.QUEUED, "RequestLimitExceeded")}
    assert all(d.not_before > timezone.now() for d in got)  # backed off, to be tried again


def test_a_member_taken_back_before_the_open_holds_the_whole_batch(monkeypatch, fake_providers, tencent):
    rows = queued(people(3), tencent)
    take_back_first_claimed(monkeypatch)

    flight.chunk_send([r.pk for r in rows])

    assert sends(fake_providers) == []  # its number was in the request: nothing left
    lost, *others = fresh(rows)
    assert lost.status == DeliveryStatus.QUEUED and not lost.attempts.exists()
    assert {(d.status, d.last_error_code) for d in others} == {(DeliveryStatus.QUEUED, "not_sent")}
    assert {attempt(d).outcome for d in others} == {AttemptOutcome.TRANSIENT}


@pytest.mark.parametrize("statements", ["postgresql", "orm"])
def test_a_batch_settles_the_same_through_the_orm(monkeypatch, fake_providers, tencent, statements):
    if statements == "orm":
        monkeypatch.setattr(flight, "_postgresql", lambda: False)
    rows = queued(people(5), tencent)

    flight.chunk_send([r.pk for r in rows])

    (call,) = sends(fake_providers)
    assert {d.status for d in fresh(rows)} == {DeliveryStatus.SENT}
    assert {attempt(d).provider_key for d in rows} == {call["SessionContext"]}


@pytest.mark.parametrize("answered", ["in time", "late"])
def test_status_reports_of_a_batch_reach_each_member_by_its_number(client, fake, tencent, answered):
    from channels.fakeproviders import tencent_reports
    from channels.models import ProviderReceipt

    ChannelAccount.objects.filter(pk=tencent.pk).update(credentials={**tencent.credentials, "callback_token": "t0k"})
    if answered == "late":  # unknown, no SerialNo yet: only the batch key and the number name the member
        httpx.post(f"{fake_url(fake)}/_script", json={"path": SEND_SMS, "responses": [{"latency_ms": LATE_MS}]})
    persons = people(3)
    rows = queued(persons, tencent)
    flight.chunk_send([r.pk for r in rows])
    records = [r for r in fake.state.sms if r["provider"] == "tencent"]
    assert len(records) == 3 and len({r["session_context"] for r in records}) == 1

    answer = client.post(
        f"/api/v1/callbacks/tencent/{tencent.pk}?token=t0k",
        data=tencent_reports(records),
        content_type="application/json",
    )

    assert answer.status_code == 200
    by_phone = {f"+86{p.phone}": d.pk for p, d in zip(persons, rows, strict=True)}
    for record in records:
        receipt = ProviderReceipt.objects.get(provider_message_id=record["serial"])
        assert receipt.delivery_id == by_phone[record["phone"]] and receipt.outcome != "unmatched"
    # The provider's word that it reached the phone settles even an unknown member: nothing resent.
    assert {d.status for d in fresh(rows)} == {DeliveryStatus.DELIVERED}
    assert len(sends(fake_url(fake))) == 1


def fake_url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_batching_off_sends_one_request_each(settings, fake_providers, tencent):
    settings.PROVIDER_BATCHING = False
    rows = queued(people(3), tencent)

    flight.chunk_send([r.pk for r in rows])

    assert [len(c["PhoneNumberSet"]) for c in sends(fake_providers)] == [1, 1, 1]
    assert {d.status for d in fresh(rows)} == {DeliveryStatus.SENT}


def test_mainland_and_other_numbers_never_share_a_request(fake_providers, tencent):
    persons = people(3)
    Recipient.objects.filter(pk=persons[0].pk).update(phone="+85291234567")  # Tencent: all one or all the other
    rows = queued(persons, tencent)

    flight.chunk_send([r.pk for r in rows])

    calls = sends(fake_providers)
    assert sorted(c["PhoneNumberSet"] for c in calls) == [["+85291234567"], [f"+86{p.phone}" for p in persons[1:]]]


def test_a_bug_reading_a_batchs_answer_leaves_each_member_unknown_not_resent(monkeypatch, fake_providers, tencent):
    from channels.providers import sms

    def broken(answer, phones, key):
        raise KeyError("a bug of ours, after Tencent took the request")

    monkeypatch.setattr(sms, "_tencent_batch", broken)
    rows = queued(people(3), tencent)

    flight.chunk_send([r.pk for r in rows])

    got = fresh(rows)
    assert {(d.status, d.last_error_code) for d in got} == {(DeliveryStatus.UNKNOWN, "internal_error")}
    monkeypatch.undo()
    for d in got:
        Delivery.objects.filter(pk=d.pk).update(not_before=timezone.now())
        assert delivery_reconcile(delivery_id=d.pk) == "settle"
    assert {d.status for d in fresh(rows)} == {DeliveryStatus.SENT}
    assert len(sends(fake_providers)) == 1 and len(fake_providers.delivered("sms")) == 3  # each once
