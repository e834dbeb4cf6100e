"""Broadcasts to large audiences across layers: a worker process killed mid-broadcast and the
resume scan; the backend's API (POST /api/v1/broadcasts), its limits and its error paths."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from inbox.models import InboxCounter, InboxEvent
from scenarios import fanout
from scenarios.audiences import LIST_MAX
from scenarios.fanout import broadcast_create, broadcast_run, broadcasts_resume_stale
from scenarios.models import Broadcast
from scenarios.tests.test_fanout_broadcasts import broadcast_rows, counters_off, make_template
from tests.clients import backend_client
from tests.test_e2e_worker import ROOT, _database_url


@pytest.fixture
def template(db):
    return make_template()


@pytest.fixture
def manual(monkeypatch):
    """Broadcasts are not started on commit: the test runs them."""
    monkeypatch.setattr(fanout, "broadcast_enqueue", lambda **kwargs: None)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_broadcast_is_resumed_without_duplicates(template, manual, monkeypatch):

    people = [f"p-{i}" for i in range(10000)]
    broadcast, _ = broadcast_create(
        name="会员日", template=template, channels=["inbox"], data={"day": "1"}, external_ids=people
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test", "DATABASE_URL": _database_url()}
    code = (
        "import django; django.setup(); from scenarios.fanout import broadcast_run; "
        f"broadcast_run(broadcast_id={broadcast.pk}, chunk_size=50)"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while Broadcast.objects.get(pk=broadcast.pk).done < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    broadcast.refresh_from_db()
    assert broadcast.status == "running" and 1000 <= broadcast.done < 10000
    assert len(broadcast_rows(broadcast)) == broadcast.done  # the chunk being written left nothing

    # Nothing for a while: the resume scan hands it to a worker again (eager here).
    assert broadcasts_resume_stale(now=timezone.now()) == 0
    started = []
    monkeypatch.setattr(
        fanout, "broadcast_enqueue", lambda **kwargs: started.append(broadcast_run(broadcast_id=kwargs["broadcast_id"]))
    )
    assert broadcasts_resume_stale(now=timezone.now() + timedelta(minutes=2)) == 1
    assert started == ["done"]
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.done, broadcast.total) == ("done", 10000, 10000)
    rows = broadcast_rows(broadcast)
    assert len(rows) == len(set(rows)) == 10000
    assert InboxEvent.objects.count() == 10000
    assert not InboxCounter.objects.exclude(seq=1).exists()
    assert counters_off() == 0
    InboxCounter.objects.filter(recipient_id="p-1").update(unseen=5)
    assert counters_off() == 1  # the check can fail


@pytest.mark.django_db(transaction=True)
def test_the_api_sends_a_broadcast_and_answers_its_progress(template, monkeypatch):
    api = backend_client()
    body = {
        "name": "会员日",
        "idempotency_key": "member-day-1",
        "template": "pt_member_day",
        "channels": ["inbox"],
        "data": {"day": "11-30"},
        "recipients": [f"p-{i}" for i in range(300)],
    }
    answer = api.post("/api/v1/broadcasts", body, format="json")
    assert answer.status_code == 202, answer.json()
    # Eager in tests: the task ran on commit, before the answer was read back.
    progress = api.get(f"/api/v1/broadcasts/{answer.json()['id']}").json()
    assert {k: progress[k] for k in ("status", "total", "done", "skipped", "failed")} == {
        "status": "done",
        "total": 300,
        "done": 300,
        "skipped": 0,
        "failed": 0,
    }
    again = api.post("/api/v1/broadcasts", body, format="json")
    assert (again.status_code, again.json()["id"]) == (200, answer.json()["id"])
    assert Broadcast.objects.count() == 1 and len(broadcast_rows(Broadcast.objects.get())) == 300
    cancel = api.post(f"/api/v1/broadcasts/{answer.json()['id']}/cancel")
    assert (cancel.status_code, cancel.json()["code"]) == (409, "broadcast_finished")
    # Another client's key sees nothing of it.
    other = backend_client(client="pharmacy")
    assert other.get(f"/api/v1/broadcasts/{answer.json()['id']}").status_code == 404


@pytest.mark.django_db
def test_the_api_cancels_a_queued_broadcast(template, manual):
    api = backend_client()
    answer = api.post(
        "/api/v1/broadcasts",
        {
            "name": "x",
            "idempotency_key": "k",
            "template": "pt_member_day",
            "channels": ["inbox"],
            "data": {"day": "1"},
            "segment": {},
        },
        format="json",
    )
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    cancel = api.post(f"/api/v1/broadcasts/{answer.json()['id']}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert broadcast_run(broadcast_id=answer.json()["id"]) == "cancelled"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"recipients": ["p-1", "", 7, {"id": "p-2"}, "x" * 65]}, {"recipients.1", "recipients.3", "recipients.4"}),
        ({"recipients": "p-1,p-2"}, {"recipients"}),
        ({"recipients": [f"p-{i}" for i in range(LIST_MAX + 1)]}, {"recipients"}),
        ({"recipients": None, "segment": {"channel": "fax"}}, {"segment.channel"}),
        ({"segment": {}}, {"recipients"}),  # both a list and a segment
        ({"channels": ["inbox", "sms", "fax"]}, {"channels.1", "channels.2"}),
        ({"template": "nope"}, {"template"}),
        ({"data": {}}, {"template.title"}),
        ({"data": {"day": "a\u0000b"}}, {"data.day"}),
        ({"importance": "urgent"}, {"importance"}),
        ({"channels": "inbox"}, {"channels"}),
        ({"idempotency_key": ""}, {"idempotency_key"}),
    ],
)
def test_bad_broadcasts_are_refused_with_field_paths(template, change, fields):
    api = backend_client()
    body = {
        "name": "会员日",
        "idempotency_key": "bad",
        "template": "pt_member_day",
        "channels": ["inbox"],
        "data": {"day": "1"},
        "recipients": ["p-1"],
        **change,
    }
    body = {k: v for k, v in body.items() if v is not None}
    answer = api.post("/api/v1/broadcasts", body, format="json")
    assert answer.status_code == 400, answer.json()
    assert set(answer.json()["fields"]) == fields
    assert answer.json()["code"] in ("invalid_broadcast", "invalid")
    assert not Broadcast.objects.exists()
