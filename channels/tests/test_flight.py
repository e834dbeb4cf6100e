"""Provider sends on an event loop (channels/flight.py): a chunk claimed, opened in one statement
before the calls leave together, and settled in bulk, over real HTTP against the fake providers."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from channels import flight, sending
from channels.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DeliveryStatusChange,
    Recipient,
)
from channels.reconcile import delivery_reconcile
from channels.tests.helpers import LATE_MS, queued, sandbox_account, take_back_first_claimed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("short_timeouts")]


@pytest.fixture
def accounts(db):
    return {
        "aliyun": sandbox_account("aliyun"),
        "tencent": sandbox_account("tencent", is_default=False),  # Aliyun is the default; Tencent when named
        "oa": sandbox_account("oa"),
        "mini": sandbox_account("mini"),
        "jpush": sandbox_account("jpush"),
        "wecom": sandbox_account("wecom_app"),
    }


@pytest.fixture
def people(db):
    return [
        Recipient.objects.create(
            audience="patient",
            external_id=f"p-{i}",
            phone=f"138{i:08d}",
            wechat_oa_openid=f"oOA-openid-{i:04d}",
            wechat_mini_openid=f"oMini-openid-{i:04d}",
            push_registration_ids=[f"1a00189{i:04d}"],
            wecom_userid=f"staff{i}",
        )
        for i in range(60)
    ]


def fresh(d: Delivery) -> Delivery:
    return Delivery.objects.get(pk=d.pk)


@pytest.fixture(params=["postgresql", "orm"])
def statements(request, monkeypatch):
    """Each test twice: PostgreSQL's one-statement steps, and the ORM's (the embedded SQLite's)."""
    if request.param == "orm":
        monkeypatch.setattr(flight, "_postgresql", lambda: False)
    return request.param


def test_a_chunk_with_mixed_answers_settles_each_as_its_own(fake_providers, accounts, people, statements):
    # Each provider answers one way; the OA template's token is refused once (a second round).
    fake_providers.script("/aliyun/", [{"json": {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}}])
    fake_providers.script("/wecom/cgi-bin/message/send", [{"json": {"errcode": -1, "errmsg": "system busy"}}])
    fake_providers.script("/jpush/v3/push", [{"latency_ms": LATE_MS}])
    fake_providers.script(
        "/wechat/cgi-bin/message/template/send", [{"json": {"errcode": 40001, "errmsg": "invalid credential"}}]
    )
    rows = {
        "aliyun": queued("sms", people[1], "sms-a"),
        "tencent": queued("sms", people[2], "sms-t", account=accounts["tencent"]),
        "oa": queued("wechat_oa_template", people[0], "oa"),
        "jpush": queued("app_push", people[3], "push"),
        "wecom": queued("wecom_app", people[4], "wecom"),
        "mini": queued("wechat_mini_subscribe", people[5], "mini"),  # no consent: skipped, no call
    }

    assert flight.chunk_send([r.pk for r in rows.values()]) == 6

    got = {name: fresh(r) for name, r in rows.items()}
    assert {name: d.status for name, d in got.items()} == {
        "aliyun": DeliveryStatus.FAILED,
        "tencent": DeliveryStatus.SENT,
        "oa": DeliveryStatus.SENT,
        "jpush": DeliveryStatus.UNKNOWN,
        "wecom": DeliveryStatus.QUEUED,
        "mini": DeliveryStatus.SKIPPED,
    }
    assert got["aliyun"].last_error_code == "isv.MOBILE_NUMBER_ILLEGAL" and got["aliyun"].finished_at
    assert got["tencent"].provider_message_id and got["tencent"].claim == ""
    assert got["jpush"].last_error_code == "timeout" and got["jpush"].finished_at is None
    assert got["wecom"].not_before > timezone.now() and got["wecom"].last_error_code == "-1"
    assert len(fake_providers.calls("/cgi-bin/message/template/send")) == 2  # refused token, then sent
    for name, d in got.items():
        (attempt,) = DeliveryAttempt.objects.filter(delivery=d)
        assert attempt.settled_at is not None and attempt.number == 1 and d.attempt_count == 1, name
        assert (
            attempt.outcome
            == {
                "aliyun": AttemptOutcome.PERMANENT,
                "tencent": AttemptOutcome.SENT,
                "oa": AttemptOutcome.SENT,
                "jpush": AttemptOutcome.UNKNOWN,
                "wecom": AttemptOutcome.TRANSIENT,
                "mini": AttemptOutcome.SKIPPED,
            }[name]
        )
    assert DeliveryAttempt.objects.get(delivery=got["jpush"]).provider_key == got["jpush"].content["jpush_cid"]
    changes = {c.delivery_id: (c.status, c.code) for c in DeliveryStatusChange.objects.filter(source="send")}
    assert changes[got["aliyun"].pk] == (DeliveryStatus.FAILED, "isv.MOBILE_NUMBER_ILLEGAL")
    assert changes[got["mini"].pk] == (DeliveryStatus.SKIPPED, "no_consent")
    assert changes[got["tencent"].pk] == (DeliveryStatus.SENT, "")


@pytest.mark.parametrize("size", [6, 40])
def test_statements_per_chunk_do_not_grow_with_its_size(
    fake_providers, accounts, people, size, django_assert_max_num_queries
):
    rows = [queued("sms", people[i], f"k{i}", account=accounts["tencent"] if i % 2 else None) for i in range(size)]

    # Claim, load, its accounts, open (lease + attempts); then BEGIN, lock, deliveries, attempts,
    # status changes, COMMIT.
    with django_assert_max_num_queries(10):
        assert flight.chunk_send([r.pk for r in rows]) == size

    assert set(Delivery.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True)) == {"sent"}
    assert DeliveryAttempt.objects.filter(delivery__in=rows, outcome="sent").count() == size


def test_a_crash_between_open_and_settle_leaves_pending_attempts_that_reconcile(
    monkeypatch, fake_providers, accounts, people, statements
):
    rows = [queued("sms", people[i], f"k{i}", account=accounts["tencent"] if i % 2 else None) for i in range(4)]

    def killed(claim, flights):
        raise SystemExit("kill -9 with every call answered and nothing settled")

    monkeypatch.setattr(flight, "_settle", killed)
    with pytest.raises(SystemExit):
        flight.chunk_send([r.pk for r in rows])

    # What a recovery scan finds: each call recorded as in flight, each delivery still claimed.
    assert {fresh(r).status for r in rows} == {DeliveryStatus.SENDING}
    assert set(DeliveryAttempt.objects.filter(delivery__in=rows).values_list("outcome", flat=True)) == {"pending"}
    monkeypatch.setattr(sending, "enqueue_reconcile", lambda ids: None)
    sending.deliveries_requeue_due(now=timezone.now() + timedelta(minutes=1))  # the lease ran out
    assert {fresh(r).status for r in rows} == {DeliveryStatus.UNKNOWN}

    for row in rows:
        Delivery.objects.filter(pk=row.pk).update(not_before=timezone.now())
        assert delivery_reconcile(delivery_id=row.pk) == "settle"  # asked the provider: it has a record

    assert {fresh(r).status for r in rows} == {DeliveryStatus.SENT}
    sms = [d["key"] for d in httpx.get(f"{fake_providers.url}/_delivered").json() if d["channel"].startswith("sms")]
    # Each reached its person once; the two Tencent ones went in one batch (its key and a number).
    sent_keys = {DeliveryAttempt.objects.get(delivery=r, kind="send").provider_key for r in rows}
    assert len(sms) == len(set(sms)) == len(rows) and {k.split("|")[0] for k in sms} == sent_keys
    assert {k for k in sent_keys if k.startswith("b:k1:")} == sent_keys - {"k0", "k2"}


def test_a_row_taken_back_before_the_open_is_not_called(monkeypatch, fake_providers, accounts, people, statements):
    rows = [queued("sms", people[i], f"k{i}") for i in range(3)]
    take_back_first_claimed(monkeypatch)

    flight.chunk_send([r.pk for r in rows])

    first, *others = (fresh(r) for r in rows)
    assert first.status == DeliveryStatus.QUEUED and not first.attempts.exists()
    assert [o.status for o in others] == [DeliveryStatus.SENT] * 2
    sent_to = [c["body"]["PhoneNumbers"] for c in fake_providers.calls("/aliyun/")]
    assert sorted(sent_to) == sorted(p.phone for p in people[1:3])  # the real numbers, from the directory


def test_a_row_taken_back_before_the_open_gives_back_the_consent_its_request_took(
    monkeypatch, fake_providers, accounts, people, statements
):
    from channels.models import SubscribeConsent

    row = queued("wechat_mini_subscribe", people[0], "mini")
    SubscribeConsent.objects.create(recipient=people[0], template_id="tmpl-1", remaining=1)
    take_back_first_claimed(monkeypatch)

    flight.chunk_send([row.pk])

    # The request was built (the consent taken) but never left: the consent is there for the retry.
    assert SubscribeConsent.objects.get(recipient=people[0]).remaining == 1
    assert fresh(row).status == DeliveryStatus.QUEUED and not fake_providers.calls("/subscribe/send")


def test_deliver_many_sends_remote_chunks_on_the_loop_and_the_inbox_locally(
    monkeypatch, settings, fake_providers, accounts, people
):
    from channels.tasks import deliver_many

    settings.PROVIDER_EVENT_LOOP = True
    rounds = []
    fetch_all = flight._fetch_all
    monkeypatch.setattr(flight, "_fetch_all", lambda requests: rounds.append(len(requests)) or fetch_all(requests))
    rows = [queued("sms", people[i], f"k{i}") for i in range(3)]

    deliver_many([r.pk for r in rows])

    assert rounds == [3]  # the three calls left together, in one round on the loop
    assert {fresh(r).status for r in rows} == {DeliveryStatus.SENT}


def test_jpush_cids_for_a_chunk_come_ten_a_call_and_are_kept_in_one_update(
    fake_providers, accounts, people, django_assert_max_num_queries
):
    rows = [queued("app_push", people[i], f"push{i}") for i in range(25)]

    # The ten statements of any chunk, and one UPDATE (BEGIN, COMMIT) keeping every cid before the attempts.
    with django_assert_max_num_queries(13):
        assert flight.chunk_send([r.pk for r in rows]) == 25

    # The fake's apps are not VIP: at most 10 cids a call, as JPush answers them.
    assert [c["query"]["count"] for c in fake_providers.calls("/jpush/v3/push/cid")] == ["10", "10", "5"]
    got = [fresh(r) for r in rows]
    cids = [d.content["jpush_cid"] for d in got]
    assert len(set(cids)) == 25 and {d.status for d in got} == {DeliveryStatus.SENT}
    assert [DeliveryAttempt.objects.get(delivery=d).provider_key for d in got] == cids
    assert sorted(c["body"]["cid"] for c in fake_providers.calls("/jpush/v3/push")) == sorted(cids)


def test_a_chunks_wecom_duplicate_checks_are_decided_together(
    monkeypatch, fake_providers, accounts, people, django_assert_max_num_queries
):
    from channels.providers import wecom

    same = [queued("wecom_app", people[0], f"same-{i}") for i in range(4)]
    other = queued("wecom_app", people[1], "other")
    words = {"title": "医生已接诊", "body": "李明医生已接诊您的问诊。", "options": {}}
    Delivery.objects.filter(pk__in=[r.pk for r in [*same, other]]).update(content=words)
    # The chunk's keys go to the shared cache together, never one `add` a delivery.
    add = wecom.cache.add

    def one_add(key, *args, **kwargs):
        assert not key.startswith("nc:wecom-dup:"), "one add a delivery"
        return add(key, *args, **kwargs)

    monkeypatch.setattr(wecom.cache, "add", one_add)

    assert flight.chunk_send([other.pk]) == 1  # the account's token fetched (and recorded) first
    # The ten statements of any chunk and one UPDATE for the rows that go without the check.
    with django_assert_max_num_queries(11):
        assert flight.chunk_send([same[0].pk, same[1].pk]) == 2
    # A retry of the first (its answer was lost) and two more with its words, in a later chunk.
    Delivery.objects.filter(pk=same[0].pk).update(status=DeliveryStatus.QUEUED)
    assert flight.chunk_send([same[0].pk, same[2].pk, same[3].pk]) == 3

    checks = sorted(
        (c["body"]["touser"], c["body"]["enable_duplicate_check"]) for c in fake_providers.calls("/message/send")
    )
    # The first of some words to a person goes with the check, its retry too; the others without.
    assert checks == [("staff0", 0), ("staff0", 0), ("staff0", 0), ("staff0", 1), ("staff0", 1), ("staff1", 1)]
    assert [fresh(r).content.get("wecom_duplicate_check") for r in [*same, other]] == [None, 0, 0, 0, None]
    assert {fresh(r).status for r in [*same, other]} == {DeliveryStatus.SENT}
    assert len(fake_providers.delivered("wecom_app")) == 5  # the retry shown once: WeCom's check


def test_wecom_duplicate_checks_on_a_cache_without_add_many_take_one_add_each(settings, accounts, people):
    from channels.providers.wecom import DECIDED, cache, duplicate_check_seconds, duplicate_checks

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # `make run`'s
    assert not hasattr(cache, "add_many")
    rows = [queued("wecom_app", people[0], f"same-{i}") for i in range(3)]
    words = {"title": "医生已接诊", "body": "李明医生已接诊您的问诊。", "options": {}}
    Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(content=words)

    loaded = flight.chunk_load([r.pk for r in rows])
    duplicate_checks(loaded)

    assert [getattr(d, DECIDED) for d in loaded] == [duplicate_check_seconds(), 0, 0]
    assert [fresh(r).content.get("wecom_duplicate_check") for r in rows] == [None, 0, 0]
