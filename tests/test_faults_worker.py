"""`kill -9` of a real worker in the middle of provider calls: nothing lost, nothing sent twice,
every delivery settled, counted at the fake provider server (bench/faults.py is the long form)."""

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter

import httpx
import pytest
from django.db import transaction

from channels.models import ChannelAccount, Delivery, DeliveryAttempt, Recipient
from channels.sending import deliveries_requeue_due
from channels.services import DeliveryRequest, deliveries_create
from notifycenter.celery import app as celery_app
from tests.test_e2e_worker import ROOT, _database_url, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def workers(transactional_db, tmp_path, fake_providers):
    """Start real worker processes, each in its own process group, on a queue of this test's."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test",
        "DATABASE_URL": _database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_QUEUE": queue,
        "FAKE_PROVIDERS_URL": fake_providers.url,
        # A claim's lease is 2 × (1 + 2) + 4 = 10 s; unknown outcomes are looked at after 1 s.
        "PROVIDER_CONNECT_TIMEOUT": "1",
        "PROVIDER_READ_TIMEOUT": "2",
        "NOTIFYCENTER_RECONCILE_AFTER_SECONDS": "1",
    }
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_default_queue)
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    started = []

    def start():
        log = tmp_path / f"worker-{len(started)}.log"
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "notifycenter", "worker", "--pool", "threads"),
                *("--concurrency", "4", "--loglevel", "INFO", "-Q", queue),
                *("--without-heartbeat", "--without-gossip", "--without-mingle"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        wait_for(lambda: "ready." in log.read_text() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text()
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous


def test_a_worker_killed_mid_send_loses_nothing_and_sends_nothing_twice(settings, fake_providers, workers):
    from django.db import connection

    settings.RECONCILE_AFTER_SECONDS = 1
    httpx.post(f"{fake_providers.url}/_latency", json={"ms": 150, "max_ms": 450})
    accounts = {
        "sms": ChannelAccount.objects.create(
            name="aliyun",
            channel="sms",
            provider="aliyun",
            app_id="sandbox-access-key",
            credentials={"access_key_secret": "sandbox-access-secret"},
            options={"sign_name": "互联网医院"},
            is_default=True,
        ),
        "wechat_oa_template": ChannelAccount.objects.create(
            name="oa", channel="wechat_oa_template", provider="wechat", app_id="wx", credentials={"app_secret": "s"}
        ),
        "app_push": ChannelAccount.objects.create(
            name="jpush", channel="app_push", provider="jpush", app_id="k", credentials={"master_secret": "s"}
        ),
    }
    people = [
        Recipient.objects.create(
            audience="patient",
            external_id=f"p-{i}",
            phone=f"1391234{i:04d}",
            wechat_oa_openid=f"oa-{i}",
            push_registration_ids=[f"rid-{i}"],
        )
        for i in range(30)
    ]
    first = workers()
    with transaction.atomic():
        rows = deliveries_create(
            requests=[
                DeliveryRequest(
                    channel=channel,
                    recipient=person,
                    idempotency_key=f"{channel}-{person.external_id}",
                    account=account,
                    content={
                        "title": "医生已接诊",
                        "body": person.external_id,
                        "template_id": "T1",
                        "params": {"thing1": person.external_id},
                    },
                )
                for person in people
                for channel, account in accounts.items()
            ]
        )
    wait_for(lambda: DeliveryAttempt.objects.filter(outcome="pending").exists(), timeout=20, interval=0.02)

    os.killpg(first.pid, signal.SIGKILL)  # the worker and its threads, mid-call
    first.wait()
    in_flight = DeliveryAttempt.objects.filter(outcome="pending").count()
    workers()
    connection.close()

    def all_final():
        deliveries_requeue_due()  # what beat does every two seconds
        return not Delivery.objects.filter(finished_at__isnull=True).exists()

    wait_for(all_final, timeout=60, interval=0.5)

    statuses = Counter(Delivery.objects.values_list("status", flat=True))
    assert statuses == {"sent": len(rows)}, statuses  # every channel here can be reconciled
    reached = httpx.get(f"{fake_providers.url}/_delivered").json()
    per_key = Counter((d["channel"], d["key"]) for d in reached)
    assert len(per_key) == len(rows) and max(per_key.values()) == 1  # each once, none twice
    # The kill hit calls in flight, and each of them was reconciled, not resent blindly.
    assert in_flight >= 1
    assert DeliveryAttempt.objects.filter(error_code="worker_lost").count() == in_flight
