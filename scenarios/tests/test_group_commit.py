"""Group commit: single events that meet in one process are written together, each answered as
if alone; one event's fault sinks no other; a database error reaches every event of its group."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import OperationalError
from prometheus_client import REGISTRY

from channels.models import Delivery
from notifycenter.models import ApiKey
from scenarios import intake
from scenarios.groupcommit import GroupCommit
from scenarios.models import Event, Message
from tests.factories import paid_event


class Recorder:
    """A run function that holds its first group until `others` more items have queued behind it."""

    def __init__(self, commit_ref: list, others: int, fail_on=(), db_error=False):
        self.calls: list[list] = []
        self.commit_ref, self.others, self.fail_on, self.db_error = commit_ref, others, set(fail_on), db_error

    def __call__(self, key, items):
        self.calls.append(list(items))
        if len(self.calls) == 1:
            deadline = time.monotonic() + 10
            while len(self.commit_ref[0]._queue) < self.others and time.monotonic() < deadline:
                time.sleep(0.005)
        if self.db_error and len(items) > 1:
            raise OperationalError("server closed the connection unexpectedly")
        bad = [item for item in items if self.fail_on and item in self.fail_on]
        if bad:
            raise ValueError(f"cannot take {sorted(bad)}")
        return [f"{key}:{item}" for item in items]


def run_threads(commit: GroupCommit, submissions: list[tuple[str, int]]) -> list:
    """The first submission alone first (it leads), then the rest at once; each result or error."""

    def one(submission):
        try:
            return commit.submit(*submission)
        except Exception as err:
            return err

    with ThreadPoolExecutor(max_workers=len(submissions)) as pool:
        first = pool.submit(one, submissions[0])
        while not commit._busy:
            time.sleep(0.001)
        rest = [pool.submit(one, s) for s in submissions[1:]]
        return [first.result(timeout=20)] + [f.result(timeout=20) for f in rest]


def _counted(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_items_queued_behind_a_leader_go_through_as_one_group_each_with_its_own_answer():
    ref = []
    run = Recorder(ref, others=6)
    commit = GroupCommit(run, limit=32)
    ref.append(commit)
    groups, grouped = _counted("nc_intake_groups_total"), _counted("nc_intake_grouped_events_total")

    results = run_threads(commit, [("his", i) for i in range(7)])

    assert results == [f"his:{i}" for i in range(7)]
    assert run.calls[0] == [0]  # the leader did not wait for company
    assert sorted(run.calls[1]) == [1, 2, 3, 4, 5, 6]  # what came meanwhile: one group
    assert _counted("nc_intake_groups_total") - groups == 2  # /metrics: the mean group is 3.5
    assert _counted("nc_intake_grouped_events_total") - grouped == 7
    assert not commit._busy and not commit._queue


def test_groups_are_per_key_and_at_most_the_limit():
    ref = []
    run = Recorder(ref, others=6)
    commit = GroupCommit(run, limit=4)
    ref.append(commit)

    results = run_threads(commit, [("his", 0), *[("his" if i % 2 else "lab", i) for i in range(1, 7)]])

    assert results == ["his:0", *[f"{'his' if i % 2 else 'lab'}:{i}" for i in range(1, 7)]]
    assert all(len(call) <= 4 for call in run.calls)
    assert sorted(x for call in run.calls for x in call) == list(range(7))
    assert not commit._busy


def test_one_items_fault_sinks_no_other_of_its_group():
    ref = []
    run = Recorder(ref, others=5, fail_on={3})
    commit = GroupCommit(run, limit=32)
    ref.append(commit)

    results = run_threads(commit, [("his", i) for i in range(6)])

    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == ["his:0", "his:1", "his:2", "his:4", "his:5"]
    assert not commit._busy


def test_a_database_error_reaches_every_item_of_its_group_and_the_next_group_runs():
    ref = []
    run = Recorder(ref, others=4, db_error=True)
    commit = GroupCommit(run, limit=32)
    ref.append(commit)

    results = run_threads(commit, [("his", i) for i in range(5)])

    assert results[0] == "his:0"
    assert all(isinstance(r, OperationalError) for r in results[1:])
    assert len(run.calls) == 2  # not retried one by one: the database is down for all of them
    assert commit.submit("his", 9) == "his:9"  # and the next one goes through


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_over_http_are_grouped_and_stored_as_if_sent_one_by_one(catalog, live_server, monkeypatch):
    key = ApiKey.generate(client="his", name="group", scopes=["events"])[1]
    ref = [intake._single_events]
    held = Recorder(ref, others=7)  # the first group waits until seven more events queue behind it
    real = intake._single_events._run

    def slow_then_real(client, payloads):
        held(client, payloads)
        return real(client, payloads)

    monkeypatch.setattr(intake._single_events, "_run", slow_then_real)
    payloads = [paid_event(key=f"group-{i}", order_no=f"IQ-{i}") for i in range(8)]
    payloads[5]["data"].pop("inquiry_id")  # invalid: refused on its own
    payloads[6] = {**payloads[2]}  # the same key and body: the first's answer

    def post(payload):
        with httpx.Client(timeout=30) as client:
            r = client.post(
                f"{live_server.url}/api/v1/events", json=payload, headers={"Authorization": f"Api-Key {key}"}
            )
            return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(post, payloads[0])
        deadline = time.monotonic() + 10
        while not intake._single_events._busy and time.monotonic() < deadline:
            time.sleep(0.001)
        rest = [pool.submit(post, p) for p in payloads[1:]]
        answers = [first.result()] + [f.result() for f in rest]

    assert max(len(call) for call in held.calls) >= 2, held.calls  # some went through together
    statuses = [status for status, _ in answers]
    assert statuses[5] == 400 and answers[5][1]["code"] == "invalid_data"
    assert sorted([statuses[2], statuses[6]]) == [200, 202] and answers[2][1] == answers[6][1]
    assert [s for i, s in enumerate(statuses) if i not in (2, 5, 6)] == [202] * 5
    assert Event.objects.count() == 6
    for (status, body), payload in zip(answers, payloads, strict=True):
        if status >= 300:
            continue
        event = Event.objects.get(pk=body["event_id"])
        assert event.answer == body and event.data["order_no"] == payload["data"]["order_no"]
        assert Message.objects.filter(event=event).count() == body["message_count"] == 3
        assert Delivery.objects.filter(event_ref=event.pk).exists()


@pytest.mark.django_db
def test_inside_a_transaction_an_event_goes_alone(catalog, monkeypatch):
    def refuse(*args):
        raise AssertionError("grouped inside the caller's transaction")

    monkeypatch.setattr(intake._single_events, "submit", refuse)

    answer, created = intake.event_accept(client="his", payload=paid_event(key="alone"))

    assert created and Event.objects.filter(pk=answer["event_id"]).exists()


def test_a_stopped_leader_leaves_no_one_waiting_forever():
    gate = threading.Event()

    def run(key, items):
        gate.wait(5)
        raise SystemExit("the leader's thread is stopped")

    commit = GroupCommit(run, limit=32)
    results = []

    def one(i):
        try:
            results.append(commit.submit("his", i))
        except BaseException as err:
            results.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    threads[0].start()
    while not commit._busy:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    while len(commit._queue) < 2:
        time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 3 and all(isinstance(r, BaseException) for r in results)
