"""Workers survive their broker: a real worker keeps running while Redis is stopped and takes
work again when it is back. Redis here is a throwaway redis-server on a port of its own (never
the shared one)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings

import pytest
from celery.exceptions import AlwaysEagerIgnored
from django.utils import timezone

from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from channels.tasks import deliver_many
from notifycenter.celery import app as celery_app
from tests.test_e2e_worker import ROOT, _database_url, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(port: int, tmp_path) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=10)
    return proc


def _queued(recipient, key) -> Delivery:
    return Delivery.objects.create(
        channel="inbox",
        recipient=recipient,
        address=f"patient:{recipient.external_id}",
        content={"title": key, "body": key, "category": "system", "link": {}},
        idempotency_key=key,
        not_before=timezone.now(),
    )


def _send(url: str, queue: str, *deliveries: Delivery) -> None:
    """Through the broker to the worker: send_task, because the test settings run apply_async
    eagerly in this process (which would send the deliveries without the worker)."""
    with celery_app.connection_for_write(url) as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore", AlwaysEagerIgnored)
        for delivery in deliveries:
            celery_app.send_task(deliver_many.name, args=([delivery.pk],), connection=conn, queue=queue)


def _slow_pushes(n: int) -> list[Delivery]:
    """App pushes to the fake JPush, which answers after 3 s: tasks in flight when Redis stops."""
    account = ChannelAccount.objects.create(
        name="jpush", channel="app_push", provider="jpush", app_id="k", credentials={"master_secret": "s"}
    )
    person = Recipient.objects.create(audience="doctor", external_id="d-slow", push_registration_ids=["rid-1"])
    return [
        Delivery.objects.create(
            channel="app_push",
            account=account,
            recipient=person,
            address="rid-1",
            content={"title": "t", "body": "b", "category": "system", "link": {}, "options": {}},
            idempotency_key=f"slow-{i}",
            not_before=timezone.now(),
        )
        for i in range(n)
    ]


def test_a_worker_keeps_running_through_a_redis_restart_and_resumes(catalog, fake_providers, tmp_path):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    redis = _start_redis(port, tmp_path)
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_QUEUE": queue,
        "FAKE_PROVIDERS_URL": fake_providers.url,
    }
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "notifycenter", "worker", "--pool", "threads"),
                *("--concurrency", "4", "--loglevel", "INFO", "-Q", queue, "--without-mingle"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "ready." in log.read_text() or worker.poll() is not None, timeout=30)
        person = Recipient.objects.create(audience="patient", external_id="p-broker")
        before = _queued(person, "before-outage")
        _send(url, queue, before)
        wait_for(lambda: Delivery.objects.filter(pk=before.pk, status=DeliveryStatus.SENT).exists())

        # Tasks in flight when Redis goes: their messages are unacknowledged (acks late), the
        # case where kombu 5.7.0 ended the worker ("Unrecoverable error", notifycenter/celery.py).
        fake_providers.script(
            "/jpush/v3/push", [{"status": 200, "json": {"sendno": "0", "msg_id": "1"}}] * 8, latency_ms=3000
        )
        _send(url, queue, *_slow_pushes(8))
        wait_for(lambda: len(fake_providers.calls("/v3/push")) >= 4 or None, timeout=20, interval=0.01)
        redis.terminate()
        redis.wait(timeout=10)
        wait_for(lambda: "Connection to broker lost" in log.read_text(), timeout=20)
        # The worker retries into a closed port. 13 s: with kombu's default backoff (2, 4, 6, 8 s …)
        # its next try would come about 7 s after Redis is back; ours tries every second.
        time.sleep(13)
        assert worker.poll() is None, log.read_text()

        redis = _start_redis(port, tmp_path)
        back = time.monotonic()
        after = _queued(person, "after-outage")
        _send(url, queue, after)
        wait_for(lambda: Delivery.objects.filter(pk=after.pk, status=DeliveryStatus.SENT).exists(), timeout=60)
        assert time.monotonic() - back < 4, log.read_text()
        assert worker.poll() is None, log.read_text()
        assert "Unrecoverable error" not in log.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        redis.terminate()
        redis.wait(timeout=10)


def test_restoring_through_a_detached_transport_does_not_end_the_worker(settings):
    """The exact step that ended a worker in bench/outages.py (kombu 5.7.0): on a lost connection
    Celery detaches the transport, then a channel still holding unacknowledged messages (acks
    late) is closed and tries to restore them through it. Patched in notifycenter/celery.py;
    without the patch this raises AttributeError ('NoneType' object has no attribute 'hostname')."""
    channel, _ = _detached_channel(settings)

    channel.qos.restore_unacked_once()

    assert not channel.qos._delivered


def _detached_channel(settings):
    from kombu import Connection

    connection = Connection(settings.REDIS_URL)
    channel = connection.default_channel
    channel.qos._delivered["tag-1"] = object()  # a task in flight
    channel._disconnect_pools()  # the broken connection's pools are gone
    connection.transport.client = None  # what Connection._do_close_transport does
    return channel, connection


def test_acking_on_a_detached_channel_is_a_connection_error_not_a_crash(settings):
    """The second way it ended a worker: a task finishing after the reconnect acks its message on
    the old channel. kombu survives connection errors there ("Couldn't ack"), not AttributeError."""
    channel, connection = _detached_channel(settings)

    with pytest.raises(connection.connection_errors):
        channel.qos.ack("tag-1")
    channel.qos._delivered.clear()  # nothing left for kombu's exit-time restore to log about
