"""The channel tests' fixtures: the sandbox accounts (helpers.py), the fake server itself, and
the short timeouts under which a LATE_MS answer comes too late."""

import pytest

from .helpers import sandbox_account


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


@pytest.fixture
def fake(settings):
    """The fake server itself, for the tests that read its records (`fake.state`)."""
    from channels.fakeproviders import serve

    server = serve(port=0)
    settings.FAKE_PROVIDERS_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()


@pytest.fixture
def short_timeouts(settings):
    """The client gives up before a LATE_MS answer, and an unknown outcome is reconciled at once."""
    settings.PROVIDER_TIMEOUT = (1.0, 0.3)
    settings.RECONCILE_AFTER_SECONDS = 0
