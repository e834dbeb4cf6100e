"""One event through every real part: the API, PostgreSQL, Redis as broker, a Celery worker
process (not eager mode), and the patient's inbox read back with a JWT."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, Recipient
from inbox.models import InboxMessage
from notifycenter.celery import app as celery_app
from tests.factories import paid_event

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s")


@pytest.fixture
def worker(transactional_db, tmp_path):
    """A real `celery worker` process on the test database and a queue of its own."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test",
        "DATABASE_URL": _database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_QUEUE": queue,
    }
    previous = (celery_app.conf.task_always_eager, celery_app.conf.task_default_queue)
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "notifycenter",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--loglevel",
                "INFO",
                "-Q",
                queue,
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "ready." in log.read_text() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = previous
        # The worker's connections are gone; drop any the flush would wait on.
        connection.close()


def test_paid_event_reaches_the_patients_inbox_through_a_real_worker(catalog, backend, patient_app, worker):
    response = backend.post("/api/v1/events", paid_event(consultation_type="video"), format="json")
    assert response.status_code == 202, response.json()

    message = wait_for(lambda: InboxMessage.objects.filter(audience="patient", recipient_id="p-42").first())
    assert message.title == "问诊支付成功"

    inbox = patient_app.get("/api/v1/inbox/messages").json()
    assert [m["title"] for m in inbox["results"]] == ["问诊支付成功"]
    assert inbox["results"][0]["link"]["route"] == "inquiry_detail"
    assert patient_app.get("/api/v1/inbox/unread-count").json()["total"] == 1

    delivery = Delivery.objects.get(template_code="pt_inquiry_0000001", channel="inbox")
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts.count() == 1


def test_a_delivery_whose_enqueue_was_lost_is_sent_by_the_outbox_scan(catalog, worker):
    recipient = Recipient.objects.create(audience="patient", external_id="p-7")
    # As if the process died between commit and enqueue: queued, never handed to the broker.
    lost = Delivery.objects.create(
        channel="inbox",
        recipient=recipient,
        address="patient:p-7",
        content={"title": "丢失的投递", "body": "恢复后送达", "category": "system", "link": {}},
        idempotency_key="lost-1",
        not_before=timezone.now(),
    )

    from channels.tasks import requeue_due_deliveries

    requeue_due_deliveries.delay()

    wait_for(lambda: Delivery.objects.filter(pk=lost.pk, status=DeliveryStatus.SENT).exists())
    assert InboxMessage.objects.filter(recipient_id="p-7", title="丢失的投递").count() == 1
