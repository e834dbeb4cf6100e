"""Provider receipts in: each endpoint valid, forged, replayed, unknown id, duplicate, out of order.
SMS are really sent to the fake provider server over HTTP; the receipts are the fake's own
builders (the shapes it pushes), and one test has the fake push them to a live server."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from wechatpy.crypto import WeChatCrypto

from channels.fakeproviders import aliyun_reports, tencent_reports, wechat_signed_query, wechat_template_event
from channels.models import (
    ChangeSource,
    Delivery,
    DeliveryStatus,
    DeliveryStatusChange,
    ProviderReceipt,
    ReceiptOutcome,
    Recipient,
)
from channels.sending import delivery_send
from channels.services import DeliveryRequest, deliveries_create
from channels.tests.helpers import SANDBOX_ACCOUNTS, sandbox_account
from channels.timeline import delivery_progress

TOKEN = "cb-token-0123456789"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def person(db):
    return Recipient.objects.create(
        audience="patient", external_id="p-42", phone="13812345678", wechat_oa_openid="oOA-p42-openid-0001"
    )


def sms_account(provider):
    """The sandbox SMS account, with the token its receipt callbacks carry."""
    credentials = SANDBOX_ACCOUNTS[provider]["credentials"] | {"callback_token": TOKEN}
    return sandbox_account(provider, credentials=credentials)


def sent(channel, person, key, fake) -> Delivery:
    (row,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel=channel,
                recipient=person,
                idempotency_key=key,
                not_before=timezone.now() + timedelta(hours=1),
                content={"title": "t", "body": "b", "template_id": "SMS_123", "params": {"name": "李明"}},
            )
        ]
    )
    Delivery.objects.filter(pk=row.pk).update(not_before=timezone.now())
    delivery_send(delivery_id=row.pk)
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SENT, row.last_error_message
    return row


BUILD = {"aliyun": aliyun_reports, "tencent": tencent_reports}


def post(client, account, body, token=TOKEN):
    return client.post(
        f"/api/v1/callbacks/{account.provider}/{account.pk}?token={token}", data=body, content_type="application/json"
    )


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
def test_sms_receipt_valid_duplicate_unknown_and_out_of_order(client, fake, person, provider):
    account = sms_account(provider)
    d = sent("sms", person, f"key-{provider}", fake)
    (record,) = [r for r in fake.state.sms if r["provider"] == provider]
    report = BUILD[provider]([record])

    answer = post(client, account, report)
    assert answer.status_code == 200
    assert answer.json() == ({"code": 0, "msg": "成功"} if provider == "aliyun" else {"result": 0, "errmsg": "OK"})
    d.refresh_from_db()
    assert d.status == DeliveryStatus.DELIVERED
    # Duplicate: harmless, one timeline row.
    assert post(client, account, report).status_code == 200
    assert DeliveryStatusChange.objects.filter(delivery=d, status=DeliveryStatus.DELIVERED).count() == 1
    assert ProviderReceipt.objects.filter(delivery=d, outcome=ReceiptOutcome.DUPLICATE).count() == 1
    # Unknown id: kept, visible, not dropped.
    stranger = dict(record, biz_id="999^0", out_id="nobody", serial="0:nobody", session_context="nobody")
    assert post(client, account, BUILD[provider]([stranger])).status_code == 200
    assert ProviderReceipt.objects.filter(outcome=ReceiptOutcome.UNMATCHED, delivery=None).count() == 1
    # Out of order: the person clicked; a late "undelivered" is kept with its time, status stays clicked.
    assert delivery_progress(delivery_id=d.pk, status="clicked", at=None, source=ChangeSource.CLICK) == "applied"
    failed = BUILD[provider]([dict(record, fail=True)])
    assert post(client, account, failed).status_code == 200
    d.refresh_from_db()
    assert d.status == DeliveryStatus.CLICKED
    late = DeliveryStatusChange.objects.get(delivery=d, status=DeliveryStatus.UNDELIVERED)
    assert not late.applied and late.code == "MK:0001"
    assert list(DeliveryStatusChange.objects.filter(delivery=d).values_list("status", flat=True)) == [
        "queued",
        "sent",
        "delivered",
        "clicked",
        "undelivered",
    ]


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
def test_sms_receipt_forged_or_replayed_is_refused_and_recorded(client, fake, person, provider):
    account = sms_account(provider)
    d = sent("sms", person, f"key-{provider}", fake)
    (record,) = [r for r in fake.state.sms if r["provider"] == provider]

    forged = post(client, account, BUILD[provider]([record]), token="guess")
    assert forged.status_code == 401 and forged.json()["code"] == "callback_refused"
    replay = post(client, account, BUILD[provider]([dict(record, at=time.time() - 5 * 86400)]))
    assert replay.status_code == 401 and "replay" in replay.json()["message"]
    d.refresh_from_db()
    assert d.status == DeliveryStatus.SENT
    assert ProviderReceipt.objects.filter(outcome=ReceiptOutcome.REFUSED, account=account).count() == 2
    bad = client.post(
        f"/api/v1/callbacks/{provider}/{account.pk}?token={TOKEN}", data={"x": 1}, content_type="application/json"
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_receipt"


def test_a_receipt_for_an_unknown_outcome_settles_it_as_sent(client, fake, person):
    account = sms_account("aliyun")
    d = sent("sms", person, "key-unknown", fake)
    Delivery.objects.filter(pk=d.pk).update(status=DeliveryStatus.UNKNOWN, finished_at=None)
    (record,) = fake.state.sms
    assert post(client, account, aliyun_reports([record])).status_code == 200
    d.refresh_from_db()
    assert d.status == DeliveryStatus.DELIVERED and d.finished_at is not None
    assert list(d.status_changes.values_list("status", "source")[2:]) == [("sent", "receipt"), ("delivered", "receipt")]


def test_a_receipt_that_comes_while_sending_waits_and_is_applied_later(client, fake, person):
    from channels.receipts import receipts_retry_early

    account = sms_account("aliyun")
    d = sent("sms", person, "key-early", fake)
    Delivery.objects.filter(pk=d.pk).update(status=DeliveryStatus.SENDING)
    (record,) = fake.state.sms
    assert post(client, account, aliyun_reports([record])).status_code == 200
    assert ProviderReceipt.objects.get(delivery=d).outcome == ReceiptOutcome.EARLY
    Delivery.objects.filter(pk=d.pk).update(status=DeliveryStatus.SENT)
    assert receipts_retry_early() == 1
    d.refresh_from_db()
    assert d.status == DeliveryStatus.DELIVERED


@pytest.fixture
def oa(db):
    return sandbox_account(
        "oa",
        app_id="wx0123456789abcdef",
        credentials={
            "app_secret": "s",
            "token": "wechat-server-token",
            "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        },
    )


def oa_delivery(person, msg_id="200163836"):
    (row,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="wechat_oa_template",
                recipient=person,
                idempotency_key=f"oa-{msg_id}",
                not_before=timezone.now() + timedelta(hours=1),
                content={"title": "t", "body": "b"},
            )
        ]
    )
    Delivery.objects.filter(pk=row.pk).update(
        status=DeliveryStatus.SENT, provider_message_id=msg_id, finished_at=timezone.now()
    )
    return row


def wechat_post(client, account, xml, query=None):
    query = query or wechat_signed_query("wechat-server-token")
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return client.post(f"/api/v1/callbacks/wechat/{account.pk}?{qs}", data=xml, content_type="text/xml")


def test_wechat_handshake_and_template_event_plain_mode(client, oa, person):
    query = wechat_signed_query("wechat-server-token")
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    hello = client.get(f"/api/v1/callbacks/wechat/{oa.pk}?{qs}&echostr=hello-123")
    assert hello.status_code == 200 and hello.content == b"hello-123"
    forged_hello = client.get(f"/api/v1/callbacks/wechat/{oa.pk}?{qs.replace('signature=', 'signature=0')}&echostr=x")
    assert forged_hello.status_code == 401

    d = oa_delivery(person)
    answer = wechat_post(client, oa, wechat_template_event(msg_id="200163836", openid=person.wechat_oa_openid))
    assert answer.status_code == 200 and answer.content == b"success"
    d.refresh_from_db()
    assert d.status == DeliveryStatus.DELIVERED
    # The user blocked a later one: undelivered, with WeChat's words.
    d2 = oa_delivery(person, msg_id="200163837")
    wechat_post(client, oa, wechat_template_event(msg_id="200163837", openid="o", status="failed:user block"))
    d2.refresh_from_db()
    assert d2.status == DeliveryStatus.UNDELIVERED and d2.status_changes.last().code == "failed:user block"
    # Unknown MsgID: kept.
    wechat_post(client, oa, wechat_template_event(msg_id="1", openid="o"))
    assert ProviderReceipt.objects.filter(provider="wechat", outcome=ReceiptOutcome.UNMATCHED).count() == 1


def test_wechat_forged_stale_and_replayed_nonce_are_refused(client, oa, person):
    d = oa_delivery(person)
    xml = wechat_template_event(msg_id="200163836", openid="o")
    forged = wechat_signed_query("not-the-token")
    assert wechat_post(client, oa, xml, forged).status_code == 401
    stale = wechat_signed_query("wechat-server-token", timestamp=int(time.time()) - 3600)
    assert wechat_post(client, oa, xml, stale).status_code == 401
    query = wechat_signed_query("wechat-server-token")
    assert wechat_post(client, oa, xml, query).status_code == 200
    assert wechat_post(client, oa, xml, query).status_code == 401  # the same nonce again: a replay
    assert ProviderReceipt.objects.filter(outcome=ReceiptOutcome.REFUSED).count() == 3
    assert d.status_changes.filter(status="delivered").count() == 1


def test_wechat_safe_mode_and_mini_program_event(client, oa, person):
    d = oa_delivery(person, msg_id="1700827132819554304")
    inner = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1700000000</CreateTime>"
        "<MsgType>event</MsgType><Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List>"
        "<TemplateId>tmpl-1</TemplateId><MsgID>1700827132819554304</MsgID><ErrorCode>0</ErrorCode>"
        "<ErrorStatus>success</ErrorStatus></List></SubscribeMsgSentEvent></xml>"
    )
    Delivery.objects.filter(pk=d.pk).update(channel="wechat_mini_subscribe")
    crypto = WeChatCrypto("wechat-server-token", oa.credentials["encoding_aes_key"], oa.app_id)
    query = wechat_signed_query("wechat-server-token")
    encrypted = crypto.encrypt_message(inner, query["nonce"], query["timestamp"])
    import re

    msg_signature = re.search(r"<MsgSignature><!\[CDATA\[(\w+)\]\]>", encrypted)[1]
    query |= {"encrypt_type": "aes", "msg_signature": msg_signature}
    assert wechat_post(client, oa, encrypted, query).status_code == 200
    d.refresh_from_db()
    assert d.status == DeliveryStatus.DELIVERED
    # The ciphertext tampered with: refused.
    query2 = wechat_signed_query("wechat-server-token")
    query2 |= {"encrypt_type": "aes", "msg_signature": "0" * 40}
    assert wechat_post(client, oa, encrypted, query2).status_code == 401


def test_the_fake_server_pushes_sms_receipts_over_http(live_server, fake, person):
    import httpx

    aliyun = sms_account("aliyun")
    deliveries = [sent("sms", person, f"key-{i}", fake) for i in range(5)]
    base = f"{live_server.url}/api/v1/callbacks"
    answer = httpx.post(
        f"http://127.0.0.1:{fake.server_address[1]}/_receipts",
        json={"aliyun": f"{base}/aliyun/{aliyun.pk}?token={TOKEN}", "batch": 2, "duplicate_share": 1, "unknown": 3},
        timeout=30,
    ).json()
    assert answer["reports"] == 5 * 2 + 3 and all(a == [200, {"code": 0, "msg": "成功"}] for a in answer["answers"])
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries])} == {"delivered"}
    assert ProviderReceipt.objects.filter(outcome=ReceiptOutcome.DUPLICATE).count() == 5
    assert ProviderReceipt.objects.filter(outcome=ReceiptOutcome.UNMATCHED).count() == 3


def test_receipts_pulled_per_account_sms_and_jpush(fake, person):
    from channels.receipts.pull import receipts_pull_all

    aliyun = sms_account("aliyun")
    aliyun.options = {**aliyun.options, "pull_receipts": True}
    aliyun.save()
    d = sent("sms", person, "key-pull", fake)
    jp = sandbox_account("jpush")
    Recipient.objects.filter(pk=person.pk).update(push_registration_ids=["1a0018970aa"])
    person.refresh_from_db()
    push = sent("app_push", person, "key-push", fake)
    assert push.account == jp and push.provider_message_id
    # A push the fake never saw: JPush reports nothing for it, it stays sent.
    (other,) = deliveries_create(
        requests=[DeliveryRequest(channel="app_push", recipient=person, idempotency_key="k-x", content={})]
    )
    Delivery.objects.filter(pk=other.pk).update(
        status=DeliveryStatus.SENT, provider_message_id="424242", finished_at=timezone.now()
    )

    counts = receipts_pull_all()
    assert counts == {ReceiptOutcome.APPLIED: 2}
    assert Delivery.objects.get(pk=d.pk).status == DeliveryStatus.DELIVERED
    assert Delivery.objects.get(pk=push.pk).status == DeliveryStatus.DELIVERED
    assert Delivery.objects.get(pk=other.pk).status == DeliveryStatus.SENT
    assert receipts_pull_all() == {}  # nothing left waiting


def test_wechat_duplicate_and_out_of_order_events(client, oa, person):
    d = oa_delivery(person)
    xml = wechat_template_event(msg_id="200163836", openid="o")
    assert wechat_post(client, oa, xml).status_code == 200
    assert wechat_post(client, oa, xml).status_code == 200  # WeChat's retry: a fresh signature, the same event
    assert ProviderReceipt.objects.filter(delivery=d, outcome=ReceiptOutcome.DUPLICATE).count() == 1
    assert delivery_progress(delivery_id=d.pk, status="read", at=None, source=ChangeSource.CLICK) == "applied"
    late = wechat_template_event(msg_id="200163836", openid="o", status="failed: system failed")
    assert wechat_post(client, oa, late).status_code == 200
    d.refresh_from_db()
    assert d.status == DeliveryStatus.READ
    assert ProviderReceipt.objects.filter(delivery=d, outcome=ReceiptOutcome.LATE).count() == 1


def test_the_fake_server_pushes_wechat_template_events_signed(live_server, fake, person):
    import httpx

    account = sandbox_account("oa", credentials={"app_secret": "sandbox-oa-secret", "token": "wechat-server-token"})
    (row,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="wechat_oa_template",
                recipient=person,
                idempotency_key="oa-live",
                not_before=timezone.now() + timedelta(hours=1),
                content={"title": "t", "body": "b", "template_id": "tmpl-1", "params": {"thing1": "李明"}},
            )
        ]
    )
    Delivery.objects.filter(pk=row.pk).update(not_before=timezone.now())
    delivery_send(delivery_id=row.pk)
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SENT and row.provider_message_id, row.last_error_message
    target = {"url": f"{live_server.url}/api/v1/callbacks/wechat/{account.pk}", "token": "wechat-server-token"}
    answer = httpx.post(
        f"http://127.0.0.1:{fake.server_address[1]}/_receipts", json={"wechat_template": target}, timeout=30
    ).json()
    assert answer["wechat_events"] == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.DELIVERED
