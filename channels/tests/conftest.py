"""The channel tests' sandbox accounts, written once: each sends to the fake provider server
(channels/fakeproviders.py), and a test that needs another value passes it as an override."""

import copy

import pytest

from channels.models import ChannelAccount

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


@pytest.fixture
def oa(db):
    return sandbox_account("oa")


@pytest.fixture
def robot(db):
    return sandbox_account("robot")


@pytest.fixture
def wecom_app(db):
    return sandbox_account("wecom_app")


@pytest.fixture
def aliyun(db):
    return sandbox_account("aliyun")


@pytest.fixture
def tencent(db):
    return sandbox_account("tencent")
