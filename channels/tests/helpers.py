"""What the channel tests import: the sandbox accounts, written once (each sends to the fake
provider server, channels/fakeproviders.py; a test that needs another value passes it as an
override), a due delivery, a claim taken back, and how late a late answer is. The fixtures made
of them are in conftest.py."""

import copy
from datetime import timedelta

from django.utils import timezone

from channels import flight
from channels.models import ChannelAccount, Delivery, DeliveryStatus
from channels.services import DeliveryRequest, deliveries_create

LATE_MS = 900  # the fake acts on the request, then answers after this; the client waits 0.3 s

SANDBOX_ACCOUNTS = {
    "oa": {
        "name": "oa",
        "channel": "wechat_oa_template",
        "provider": "wechat",
        "app_id": "wx-oa",
        "credentials": {"app_secret": "s-oa"},
    },
    "mini": {
        "name": "mini",
        "channel": "wechat_mini_subscribe",
        "provider": "wechat",
        "app_id": "wx-mini",
        "credentials": {"app_secret": "s-mini"},
    },
    "robot": {"name": "robot", "channel": "wecom_robot", "provider": "wecom", "credentials": {"robot_key": "k-ops"}},
    "wecom_app": {
        "name": "wecom-app",
        "channel": "wecom_app",
        "provider": "wecom",
        "app_id": "ww-corp",
        "credentials": {"corp_secret": "s-corp"},
        "options": {"agentid": 1000002},
    },
    "jpush": {
        "name": "jpush",
        "channel": "app_push",
        "provider": "jpush",
        "app_id": "app-key",
        "credentials": {"master_secret": "m-secret"},
    },
    # The fake Aliyun and Tencent Cloud check signatures: these are their key pairs (ALIYUN_KEYS, TENCENT_KEYS).
    "aliyun": {
        "name": "aliyun",
        "channel": "sms",
        "provider": "aliyun",
        "app_id": "sandbox-access-key",
        "credentials": {"access_key_secret": "sandbox-access-secret"},
        "options": {"sign_name": "互联网医院"},
    },
    "tencent": {
        "name": "tencent",
        "channel": "sms",
        "provider": "tencent",
        "app_id": "1400000000",
        "credentials": {"secret_id": "sandbox-secret-id", "secret_key": "sandbox-secret-key"},
        "options": {"sign_name": "互联网医院"},
    },
}


def sandbox_account(kind: str, **overrides) -> ChannelAccount:
    """The default account of its channel for `kind` (a key of SANDBOX_ACCOUNTS); an override
    replaces a whole field, as in `sandbox_account("tencent", is_default=False)`."""
    fields = {"is_default": True, **copy.deepcopy(SANDBOX_ACCOUNTS[kind]), **overrides}
    return ChannelAccount.objects.create(**fields)


def queued(channel, recipient, key="k1", *, account=None, params=None, options=None, event_ref=None) -> Delivery:
    """A due delivery, created not due so that no worker (eager in tests) sends it before the test does."""
    (row,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel=channel,
                recipient=recipient,
                idempotency_key=key,
                account=account,
                event_ref=event_ref,
                not_before=timezone.now() + timedelta(hours=1),
                content={
                    "title": "医生已接诊",
                    "body": f"李明医生已接诊您的问诊 {key}。",
                    "template_id": "SMS_123" if channel == "sms" else "tmpl-1",
                    "params": params or ({"name": "李明"} if channel == "sms" else {"thing1": "李明"}),
                    "options": options or {},
                },
            )
        ]
    )
    Delivery.objects.filter(pk=row.pk).update(not_before=timezone.now())
    return row


def take_back_first_claimed(monkeypatch):
    """From now on a chunk loses its first claimed row before it opens: the outbox scan took it
    back in between (our lease ran out) and queued it again."""
    claim_for_real = flight.chunk_claim

    def claim_then_lose_one(ids):
        claim, claimed = claim_for_real(ids)
        Delivery.objects.filter(pk=claimed[0].pk).update(status=DeliveryStatus.QUEUED, claim="", lease_until=None)
        return claim, claimed

    monkeypatch.setattr(flight, "chunk_claim", claim_then_lose_one)
