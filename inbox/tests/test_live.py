"""The live inbox over real sockets: uvicorn serving notifycenter.asgi, Redis pub/sub, PostgreSQL."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection

from inbox.models import InboxEvent
from inbox.selectors import inbox_counts, inbox_counts_truth
from inbox.services import inbox_message_put, inbox_messages_mark
from notifycenter.auth import issue_inbox_token

from .live_clients import Server

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET_SECONDS = 2.0  # commit to client on this shared 2-core machine; bench/live.py measures it


@pytest.fixture
def server(settings):
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "HEARTBEAT_SECONDS": 5}
    with Server() as running:
        yield running


def put(recipient_id="p-42", n=1, audience="patient", start=0, **extra):
    return [
        inbox_message_put(
            audience=audience,
            recipient_id=recipient_id,
            title=f"消息{i}",
            body="正文",
            category="consultation",
            link={
                "target": "inquiry_detail",
                "route": "inquiry_detail",
                "params": {"inquiry_id": "9001"},
                "mini_program": "/pages/inquiry/detail?inquiryId=9001",
                "h5": "https://h5.example/inquiry/9001",
            },
            source_key=f"{audience}:{recipient_id}:{i}",
            **extra,
        )[0]
        for i in range(start, start + n)
    ]


def token(role="patient", sub="p-42", **kw):
    return issue_inbox_token(role=role, external_id=sub, **kw)


def test_a_websocket_and_an_sse_client_both_receive_a_new_message_within_budget(server):
    ws = server.ws(token(), query="?platform=mini_program")
    sse = server.sse(token(), headers={"X-Client-Platform": "h5"})
    assert ws.next()["type"] == "ready"
    assert sse.next()["type"] == "ready"

    started = time.monotonic()
    (message,) = put()
    ws_event = ws.next()
    sse_event = sse.next()
    took = time.monotonic() - started

    assert took < BUDGET_SECONDS
    assert ws_event["type"] == sse_event["type"] == "message.created"
    assert ws_event["id"] == sse_event["id"] == int(sse_event["sse_id"])
    assert ws_event["data"]["message"]["id"] == message.pk
    assert ws_event["data"]["message"]["link"]["url"] == "/pages/inquiry/detail?inquiryId=9001"
    assert sse_event["data"]["message"]["link"]["url"] == "https://h5.example/inquiry/9001"
    assert ws_event["data"]["counts"]["total"] == 1
    assert ws_event["data"]["counts"]["by_category"]["consultation"] == 1
    ws.close()
    sse.close()


def test_read_seen_archived_and_deleted_are_pushed_with_the_counts(server):
    first, second, third = put(n=3)
    ws = server.ws(token())
    assert ws.next()["data"]["counts"] == {
        "total": 3,
        "by_category": {"consultation": 3, "prescription": 0, "order": 0, "points": 0, "system": 0},
        "unseen": 3,
    }

    inbox_messages_mark(audience="patient", recipient_id="p-42", action="seen", ids=[first.pk, second.pk])
    inbox_messages_mark(audience="patient", recipient_id="p-42", action="read", ids=[first.pk])
    inbox_messages_mark(audience="patient", recipient_id="p-42", action="archive", ids=[second.pk])
    inbox_messages_mark(audience="patient", recipient_id="p-42", action="delete", ids=[third.pk])

    events = [ws.next() for _ in range(4)]
    assert [(e["type"], e["data"]["ids"]) for e in events] == [
        ("message.seen", [first.pk, second.pk]),
        ("message.read", [first.pk]),
        ("message.archived", [second.pk]),
        ("message.deleted", [third.pk]),
    ]
    assert [(e["data"]["counts"]["total"], e["data"]["counts"]["unseen"]) for e in events] == [
        (3, 1),
        (2, 1),
        (1, 1),
        (0, 0),
    ]
    ws.close()


def test_the_mini_program_sends_its_token_in_the_first_frame(server):
    ws = server.ws(query="?platform=mini_program", first_frame={"type": "auth", "token": token()})
    assert ws.next()["type"] == "ready"
    put()
    assert ws.next()["type"] == "message.created"
    ws.close()


def test_a_bad_token_gets_an_error_frame_and_close_4401(server):
    ws = server.ws(first_frame={"type": "auth", "token": "not-a-jwt"})
    frame = ws.next()
    assert frame["type"] == "error"
    assert frame["code"] == "token_invalid"
    with pytest.raises(Exception) as closed:
        ws.next(timeout=2)
    assert getattr(closed.value, "rcvd", None).code == 4401


def test_the_stream_without_a_token_is_401_with_the_api_error_shape(server):
    sse = server.sse(token="")
    assert sse.status == 401
    assert sse.body["code"] == "not_authenticated"
    assert sse.headers["www-authenticate"] == "Bearer"


def test_reconnecting_with_the_last_event_id_gets_the_missed_events_exactly_once(server):
    ws = server.ws(token())
    last = ws.next()["id"]
    ws.close()
    missed = put(n=3)

    ws = server.ws(token(), query=f"?last_event_id={last}")
    frames = ws.until("ready")
    created = [f for f in frames if f["type"] == "message.created"]
    assert [f["data"]["message"]["id"] for f in created] == [m.pk for m in missed]
    assert [f["id"] for f in created] == [last + 1, last + 2, last + 3]
    assert frames[-1]["id"] == last + 3

    (later,) = put(start=3)
    frame = ws.next()
    assert (frame["type"], frame["id"], frame["data"]["message"]["id"]) == ("message.created", last + 4, later.pk)
    assert ws.nothing_for(0.5)
    ws.close()


def test_an_sse_client_resumes_from_last_event_id(server):
    sse = server.sse(token())
    last = int(sse.next()["sse_id"])
    sse.close()
    missed = put(n=2)

    sse = server.sse(token(), headers={"Last-Event-ID": str(last)})
    frames = sse.until("ready")
    assert [f["data"]["message"]["id"] for f in frames if f["type"] == "message.created"] == [m.pk for m in missed]
    assert [int(f["sse_id"]) for f in frames] == [last + 1, last + 2, last + 2]
    sse.close()


def test_resuming_from_before_the_kept_events_is_told_to_resync(server):
    put(n=3)
    InboxEvent.objects.filter(seq__lte=2).delete()  # as the purge would

    ws = server.ws(token(), query="?last_event_id=0")
    frame = ws.next()
    assert frame["type"] == "resync"
    assert frame["id"] == 3
    assert frame["data"]["counts"]["total"] == 3
    ws.close()


def test_fifty_messages_in_a_burst_arrive_once_each_and_the_count_ends_at_fifty(server):
    ws = server.ws(token())
    start = ws.next()["id"]

    def one(i):
        try:
            return put(start=i)[0].pk
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(one, range(50)))

    frames = [ws.next() for _ in range(50)]
    assert sorted(f["data"]["message"]["id"] for f in frames) == sorted(ids)
    assert [f["id"] for f in frames] == list(range(start + 1, start + 51))
    assert frames[-1]["data"]["counts"]["total"] == 50
    assert inbox_counts(audience="patient", recipient_id="p-42") == inbox_counts_truth(
        audience="patient", recipient_id="p-42"
    )
    assert inbox_counts(audience="patient", recipient_id="p-42")["total"] == 50
    assert ws.nothing_for(0.5)
    ws.close()


def test_another_persons_connection_receives_nothing(server):
    doctor = server.ws(token(role="doctor", sub="p-42"))  # the same id, another person
    other_patient = server.ws(token(sub="p-43"))
    doctor.next(), other_patient.next()

    put(n=3)

    assert doctor.nothing_for(1.0)
    assert other_patient.nothing_for(0.1)
    doctor.close()
    other_patient.close()


def test_an_event_whose_publish_was_lost_still_arrives(server, settings, monkeypatch):
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "POLL_SECONDS": 0.2}
    monkeypatch.setattr("inbox.changes.events_publish", lambda events: None)  # as if the process died
    ws = server.ws(token())
    ws.next()

    (message,) = put()

    assert ws.next(timeout=5)["data"]["message"]["id"] == message.pk
    ws.close()


def test_a_gap_is_filled_from_the_table_in_order(server, monkeypatch):
    ws = server.ws(token())
    start = ws.next()["id"]
    from inbox import changes

    real = changes.events_publish
    monkeypatch.setattr("inbox.changes.events_publish", lambda events: None)
    (lost,) = put()
    monkeypatch.setattr("inbox.changes.events_publish", real)
    (published,) = put(start=1)

    frames = [ws.next(), ws.next()]
    assert [(f["id"], f["data"]["message"]["id"]) for f in frames] == [(start + 1, lost.pk), (start + 2, published.pk)]
    ws.close()


def test_a_persons_connections_are_limited(server, settings):
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "MAX_CONNECTIONS_PER_PERSON": 2}
    first, second = server.ws(token()), server.ws(token())
    first.next(), second.next()

    third = server.ws(token())
    frame = third.next()
    sse = server.sse(token())

    assert frame["code"] == "too_many_connections"
    assert sse.status == 429
    assert sse.body["code"] == "too_many_connections"
    first.close()
    time.sleep(0.3)
    fourth = server.ws(token())
    assert fourth.next()["type"] == "ready"
    for ws in (second, fourth):
        ws.close()


def test_heartbeats_and_the_idle_timeout(server, settings):
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "HEARTBEAT_SECONDS": 0.3, "IDLE_SECONDS": 1.2}
    ws = server.ws(token())
    ws.next()
    assert ws.next(timeout=2, skip=())["type"] == "ping"
    ws.conn.send('{"type": "ping"}')
    assert ws.until("pong", timeout=2)[-1]["type"] == "pong"
    with pytest.raises(Exception) as closed:
        while True:
            ws.next(timeout=3)
    assert closed.value.rcvd.code == 4408


def test_the_connection_closes_when_the_token_expires_unless_renewed(server):
    ws = server.ws(token(lifetime=timedelta(seconds=2)))
    ws.next()
    renewed = server.ws(token(lifetime=timedelta(seconds=2)))
    renewed.next()
    renewed.conn.send(json.dumps({"type": "auth", "token": token(lifetime=timedelta(hours=1))}))
    assert renewed.next()["type"] == "auth_ok"

    frame = ws.next(timeout=5)
    assert frame["code"] == "token_expired"
    with pytest.raises(Exception) as closed:
        ws.next(timeout=2)
    assert closed.value.rcvd.code == 4401
    assert renewed.nothing_for(0.5)
    renewed.close()


def test_sse_ends_with_token_expired(server):
    # Two seconds, not one: exp is whole seconds (a 1 s token may have ~0 s left), and a token past
    # its exp is refused at connect, which is not what this test is about (1 run in 5 failed so).
    sse = server.sse(token(lifetime=timedelta(seconds=2)))
    sse.next()
    assert sse.next(timeout=6)["type"] == "token_expired"
    assert sse.next(timeout=2)["type"] == "end"


def test_without_redis_the_table_poll_delivers(settings):
    """The embedded default (no REDIS_URL): no pub/sub, the event table is the path."""
    settings.REDIS_URL = ""
    settings.INBOX_LIVE = {**settings.INBOX_LIVE, "POLL_SECONDS_WITHOUT_REDIS": 0.1}
    with Server() as server:
        ws = server.ws(token())
        start = ws.next()["id"]
        first, second = put(n=2)

        frames = [ws.next(), ws.next()]

        assert [(f["id"], f["data"]["message"]["id"]) for f in frames] == [
            (start + 1, first.pk),
            (start + 2, second.pk),
        ]
        ws.close()
