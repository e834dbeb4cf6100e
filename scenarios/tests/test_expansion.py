"""A batch's deliveries made by a worker after the batch's commit (scenarios/expansion.py): the
answer at once, every immediate message its deliveries exactly once, nothing lost when the hand-off
is lost or the worker dies in the middle. tests/test_intake_batch_equivalence.py holds the rows
made this way to those a single event makes in its request."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from channels.models import Delivery, DeliveryStatusChange
from scenarios.expansion import messages_expand
from scenarios.models import Message, MessageStatus
from scenarios.retention import person_erase
from tests.factories import paid_event


@pytest.fixture
def pending(monkeypatch):
    """What the batch hands to the workers after its commit, collected instead of sent."""
    handed: list[int] = []
    monkeypatch.setattr("scenarios.intake.expansion_enqueue", handed.extend)
    return handed


@pytest.fixture(autouse=True)
def sends(monkeypatch):
    """The deliveries handed to the senders after the expansion's commit: collected, not sent."""
    handed: list[tuple[int, str]] = []
    monkeypatch.setattr("channels.services.enqueue", handed.extend)
    return handed


def _batch(backend, n: int = 3, **data) -> list[dict]:
    response = backend.post(
        "/api/v1/events/batch", [paid_event(key=f"exp-{i}", **data) for i in range(n)], format="json"
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert {r["status"] for r in results} == {202}
    return results


@pytest.mark.django_db(transaction=True)
def test_a_batch_answers_before_its_deliveries_and_a_worker_makes_each_once(catalog, backend, pending, sends):
    results = _batch(backend)

    dispatched = Message.objects.filter(status=MessageStatus.DISPATCHED)
    assert dispatched.count() == 9  # three messages an event
    assert sorted(pending) == sorted(dispatched.values_list("pk", flat=True))
    assert set(dispatched.values_list("deliveries_pending", flat=True)) == {True}
    assert not Delivery.objects.exists()
    # The answers are what they were: the planned messages, nothing about deliveries.
    assert [len(r["body"]["messages"]) for r in results] == [3, 3, 3]

    assert messages_expand(message_ids=pending) == 9
    made = Delivery.objects.count()
    assert made == 15  # five channels bound an event
    assert DeliveryStatusChange.objects.count() == made
    assert not Message.objects.filter(deliveries_pending=True).exists()
    assert len(sends) == Delivery.objects.filter(status="queued").count() > 0

    # The task again (a broker's redelivery), and the scan: nothing more.
    assert messages_expand(message_ids=pending) == 0
    assert messages_expand(now=timezone.now() + timedelta(hours=1)) == 0
    assert Delivery.objects.count() == made


@pytest.mark.django_db(transaction=True)
def test_after_the_commit_the_worker_is_handed_the_messages(catalog, backend):
    """Eager in tests: the hand-off after the commit runs the task, so the deliveries exist."""
    _batch(backend, n=2)
    assert Delivery.objects.count() == 10
    assert not Message.objects.filter(deliveries_pending=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_lost_hand_off_is_made_by_the_scan_after_the_requeue_time(catalog, backend, monkeypatch, settings):
    def broker_down(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr("scenarios.tasks.expand_messages.delay", broker_down)
    _batch(backend, n=2)  # accepted: the broker is not needed to accept

    assert Message.objects.filter(deliveries_pending=True).count() == 6
    assert not Delivery.objects.exists()
    # Not before the requeue time: a task may still be on its way.
    assert messages_expand() == 0
    later = timezone.now() + timedelta(seconds=settings.NOTIFYCENTER["REQUEUE_AFTER_SECONDS"] + 1)
    assert messages_expand(now=later) == 6
    assert Delivery.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_a_worker_dying_in_the_middle_leaves_the_messages_pending(catalog, backend, pending, monkeypatch):
    _batch(backend, n=2)

    def killed(*args, **kwargs):
        raise SystemExit("worker killed while writing the deliveries")

    with monkeypatch.context() as patch:
        patch.setattr("scenarios.services.deliveries_write", killed)
        with pytest.raises(SystemExit):
            messages_expand(message_ids=pending)

    assert Message.objects.filter(deliveries_pending=True).count() == 6  # rolled back with it
    assert not Delivery.objects.exists()
    assert messages_expand(message_ids=pending) == 6
    assert Delivery.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_make_each_message_s_deliveries_once(catalog, backend, pending):
    _batch(backend, n=6)
    taken: list[int] = []
    start = threading.Barrier(2)

    def worker():
        start.wait()
        try:
            taken.append(messages_expand(message_ids=pending))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(taken) == 18
    assert Delivery.objects.count() == 30
    per_message = Delivery.objects.values_list("message_ref", "channel")
    assert len(set(per_message)) == len(per_message)


@pytest.mark.django_db(transaction=True)
def test_a_message_cancelled_before_its_deliveries_gets_none(catalog, backend, pending):
    _batch(backend, n=1)
    cancelled = Message.objects.filter(pk=pending[0])
    cancelled.update(status=MessageStatus.CANCELLED, status_reason="cancelled by operator")

    assert messages_expand(message_ids=pending) == 3
    assert not Delivery.objects.filter(message_ref=pending[0]).exists()
    assert Delivery.objects.count() > 0
    assert not cancelled.get().deliveries_pending


@pytest.mark.django_db(transaction=True)
def test_a_person_erased_before_the_worker_gets_nothing(catalog, backend, pending):
    _batch(backend, n=1)
    person_erase(audience="patient", external_id="p-42")

    messages_expand(message_ids=pending)

    assert not Delivery.objects.filter(recipient__external_id="p-42").exists()
    assert set(Message.objects.filter(recipient__external_id="p-42").values_list("status", flat=True)) == {
        MessageStatus.CANCELLED
    }
    assert Delivery.objects.filter(recipient__external_id="d-17").exists()


@pytest.mark.django_db(transaction=True)
def test_off_the_deliveries_are_made_in_the_request(catalog, backend, pending, settings):
    settings.EVENT_BATCH_DEFERRED_DELIVERIES = False
    _batch(backend, n=2)
    assert pending == []
    assert Delivery.objects.count() == 10
    assert not Message.objects.filter(deliveries_pending=True).exists()


def test_the_beat_runs_the_scan():
    from django.conf import settings

    from notifycenter.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["expand-lost-messages"]
    assert entry["task"] in app.tasks
    assert entry["schedule"] <= timedelta(seconds=settings.NOTIFYCENTER["REQUEUE_AFTER_SECONDS"])


# A process that makes the deliveries and is killed (SIGKILL, by itself, at the worst moment: the
# deliveries and their timeline written, the flag cleared, nothing committed yet).
DIES_BEFORE_COMMIT = r"""
import os, signal, sys
import django
django.setup()
import scenarios.expansion as expansion

real = expansion.deliver_messages

def then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

expansion.deliver_messages = then_die
expansion.messages_expand(message_ids=[int(i) for i in sys.argv[1:]])
"""


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_before_its_commit_leaves_no_delivery_and_the_messages_pending(catalog, backend, pending):
    import os
    import signal
    import subprocess
    import sys

    from tests.test_e2e_worker import ROOT, _database_url

    _batch(backend, n=2)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test",
        "DATABASE_URL": _database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    died = subprocess.run(  # noqa: S603 (this interpreter, this module's own script)
        [sys.executable, "-c", DIES_BEFORE_COMMIT, *map(str, pending)], cwd=ROOT, env=env, timeout=60
    )
    assert died.returncode == -signal.SIGKILL

    assert not Delivery.objects.exists()  # PostgreSQL rolled the dead connection's work back
    assert Message.objects.filter(deliveries_pending=True).count() == 6
    assert messages_expand(message_ids=pending) == 6
    assert Delivery.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_the_worker_sends_what_it_made_itself_not_behind_the_queue(catalog, backend, pending, monkeypatch):
    from scenarios.tasks import expand_messages

    _batch(backend, n=2)
    published = []
    monkeypatch.setattr("channels.tasks.deliver_many.delay", lambda *args, **kwargs: published.append(args))

    assert expand_messages(pending) == 6

    assert published == []  # nothing went through the broker
    inbox = Delivery.objects.filter(channel="inbox")
    assert inbox.count() == 4
    assert not inbox.filter(status__in=["queued", "sending"]).exists()
