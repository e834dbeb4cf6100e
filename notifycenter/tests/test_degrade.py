"""Degrade, don't fail: Redis away costs no event, PostgreSQL away is a 503 with Retry-After,
the health pages tell a load balancer and a person what is wrong without internals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.utils import timezone

from notifycenter import health
from notifycenter.cache import FailSoftRedisCache
from notifycenter.models import ApiKey
from scenarios.models import Event
from tests.factories import paid_event

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


@pytest.fixture
def redis_down(settings):
    """The cache and Redis URL aimed at a port where nothing listens."""
    settings.CACHES = {
        "default": {
            "BACKEND": "notifycenter.cache.FailSoftRedisCache",
            "LOCATION": NOWHERE,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.REDIS_URL = NOWHERE
    FailSoftRedisCache._down_until = 0.0
    health._client = None
    yield
    FailSoftRedisCache._down_until = 0.0
    health._client = None


def test_with_redis_down_events_are_still_accepted(catalog, backend, redis_down):
    for _ in range(3):
        response = backend.post("/api/v1/events", paid_event(), format="json")
        assert response.status_code == 202, response.content
    assert Event.objects.count() == 3


def test_with_redis_down_the_rate_limit_holds_per_process(catalog, redis_down):
    from tests.clients import backend_client

    client = backend_client()
    ApiKey.objects.update(rate_limit_per_minute=2)
    statuses = [client.post("/api/v1/events", paid_event(), format="json").status_code for _ in range(3)]
    # A minute boundary between the requests would start a new window: 2 then 1 is also right.
    assert statuses in ([202, 202, 429], [202, 202, 202])
    if statuses[-1] == 429:
        assert client.post("/api/v1/events", paid_event(), format="json")["Retry-After"]


def test_with_the_database_down_the_api_answers_503_with_retry_after(catalog, backend, monkeypatch):
    import scenarios.apis

    def cut(**kwargs):
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    monkeypatch.setattr(scenarios.apis, "event_accept", cut)
    response = backend.post("/api/v1/events", paid_event(), format="json")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "code": "database_unavailable",
        "message": "The database is unavailable; retry shortly.",
        "fields": {},
    }


def test_healthz_is_liveness_without_internals(client, monkeypatch):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client):
    body = client.get("/readyz").json()
    assert set(body["checks"]) == {"database", "redis", "beat", "outbox"}
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["redis"] == {"status": "ok"}


def test_readyz_with_redis_down_is_degraded_not_down(client, redis_down):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"] == {"status": "down"}
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_with_the_database_down_is_503_and_names_no_host(client, monkeypatch):
    class Unreachable:
        def cursor(self):
            raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    monkeypatch.setattr(health, "connection", Unreachable())
    response = client.get("/readyz")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["checks"]["database"] == {"status": "down"}
    assert "10.0.0.5" not in response.content.decode()


def test_readyz_sees_beat_ticks_and_outbox_lag(client):
    import time

    health.redis_client().set(health.BEAT_TICK_KEY, time.time() - 100)
    body = client.get("/readyz").json()
    assert body["checks"]["beat"]["status"] == "degraded" and body["checks"]["beat"]["seconds_ago"] >= 100
    health.redis_client().set(health.BEAT_TICK_KEY, time.time())
    assert client.get("/readyz").json()["checks"]["beat"]["status"] == "ok"
    health.redis_client().delete(health.BEAT_TICK_KEY)


def _token(**claims):
    conf = django_settings.INBOX_JWT
    now = timezone.now()
    base = {"sub": "p-42", "role": "patient", "aud": conf["AUDIENCE"], "exp": now.timestamp() + 600}
    return jwt.encode({**base, **claims}, conf["SECRET"], algorithm="HS256")


def test_a_token_with_an_empty_sub_is_refused(client):
    response = client.get("/api/v1/inbox/unread-count", HTTP_AUTHORIZATION=f"Bearer {_token(sub='')}")
    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


def test_a_forged_token_is_refused_without_the_librarys_words(client):
    forged = _token()[:-4] + "AAAA"
    body = client.get("/api/v1/inbox/unread-count", HTTP_AUTHORIZATION=f"Bearer {forged}").json()
    assert body == {"code": "token_invalid", "message": "The token is invalid.", "fields": {}}
    garbage = client.get("/api/v1/inbox/unread-count", HTTP_AUTHORIZATION="Bearer not.a.jwt").json()
    assert garbage["message"] == "The token is invalid."


PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
    "DJANGO_SECRET_KEY": "a-production-like-secret-of-fifty-characters-or-more-9f8e7d6c5b4a",
    "INBOX_JWT_SECRET": "x" * 40,
    "FIELD_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWtleS0zMi1ieXRlcy1sb25nLTAwMDA=",
    "DJANGO_ALLOWED_HOSTS": "notify.hospital.cn",
    "DJANGO_BEHIND_PROXY": "1",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SECURE_COOKIES": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_PRELOAD": "1",
}


def test_check_deploy_is_clean_with_the_readmes_production_settings(tmp_path):
    """The same variables as README's "Running in production"."""
    readme = (ROOT / "README.md").read_text()
    for name in PRODUCTION_ENV:
        if name != "DJANGO_SETTINGS_MODULE":
            assert name in readme, f"README's production settings lack {name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(PRODUCTION_ENV, NOTIFYCENTER_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_admin_logins_lock_out_after_repeated_failures(client, django_user_model, settings):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "right-password-123")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/?next=/admin/", {"username": "ops", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "ops", "password": "right-password-123"})
    assert response.status_code == 429
    assert "登录失败次数过多" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_metrics_are_protected_and_count_what_operators_watch(catalog, backend, client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401

    backend.post("/api/v1/events", paid_event(key="m-1"), format="json")
    backend.post("/api/v1/events", paid_event(key="m-1"), format="json")
    backend.post("/api/v1/events", {**paid_event(), "event": "no.such"}, format="json")
    # A batch's three messages wait for a worker to make their deliveries (never, here: no commit).
    backend.post("/api/v1/events/batch", [paid_event(key="m-2")], format="json")
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()

    for line in (
        'nc_events_total{code="",outcome="accepted"}',
        'nc_events_total{code="",outcome="replayed"}',
        'nc_events_total{code="unknown_event",outcome="refused"}',
        # Not yet sent: this test's transaction never commits, so nothing is enqueued.
        'nc_deliveries{channel="inbox",status="queued"}',
        "nc_outbox_due 3.0",
        "nc_outbox_due ",
        "nc_outbox_oldest_due_seconds ",
        "nc_reminders_lateness_seconds ",
        "nc_messages_deliveries_pending 3.0",
        "nc_messages_deliveries_pending_oldest_seconds ",
        "# TYPE nc_provider_request_seconds histogram",
        "# TYPE nc_token_refreshes_total counter",
    ):
        assert line in text, line


def test_provider_calls_are_timed_in_a_histogram(fake_providers):
    from channels.metrics import PROVIDER_SECONDS
    from channels.providers.wecom import WeComRobotBackend

    def count():
        return sum(
            s.value
            for m in PROVIDER_SECONDS.collect()
            for s in m.samples
            if s.name.endswith("_count") and s.labels["channel"] == "wecom_robot"
        )

    before = count()
    WeComRobotBackend().request("POST", f"{fake_providers.url}/wecom/cgi-bin/webhook/send?key=k", json={})
    assert count() == before + 1


def test_json_logs_carry_the_ids_of_the_task(caplog):
    import logging

    from notifycenter.logs import ContextIds, JsonFormatter, bind_ids, clear_ids

    record = logging.LogRecord("channels.sending", logging.WARNING, __file__, 1, "provider said %s", ("busy",), None)
    token = bind_ids(task="channels.tasks.deliver_many", delivery_ids=[7, 8])
    ContextIds().filter(record)
    clear_ids(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "provider said busy"
    assert line["delivery_ids"] == [7, 8] and line["task"] == "channels.tasks.deliver_many"
