"""Broadcasts to large audiences (scenarios/fanout.py): one inbox row per person, counters equal
to the truth, live events numbered after each person's counter, resumable after a kill, progress
counted, cancellable."""

import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from channels.models import Delivery, DeliveryStatusChange, Preference, Recipient
from inbox.models import InboxCounter, InboxEvent, InboxMessage
from inbox.services import inbox_message_put
from scenarios import fanout
from scenarios.audiences import LIST_MAX
from scenarios.fanout import broadcast_cancel, broadcast_create, broadcast_run
from scenarios.models import AudiencePolicy, Broadcast, ChannelBinding, LinkTarget, Template

PEOPLE_30 = [f"p-{i}" for i in range(30)]


def make_template() -> Template:
    """A points message with a link, bound to the inbox."""
    link = LinkTarget.objects.create(
        code="member_day", name="会员日", route="member_day", params={"day": "{{ day }}"}, h5_url="/m?day={day}"
    )
    template = Template.objects.create(
        code="pt_member_day",
        name="会员日",
        audience="patient",
        category="points",
        title="会员日 {{ day }}",
        body="会员日活动开始啦，欢迎参与。",
        link=link,
    )
    ChannelBinding.objects.create(template=template, channel="inbox")
    return template


@pytest.fixture
def template(db):
    return make_template()


@pytest.fixture
def manual(monkeypatch):
    """Broadcasts are not started on commit: the test runs them."""
    monkeypatch.setattr(fanout, "broadcast_enqueue", lambda **kwargs: None)


def recount_corrections() -> str:
    out = StringIO()
    call_command("inbox_recount", audience="patient", stdout=out)
    return out.getvalue().strip()


def counters_off() -> int:
    """People whose counter differs from their messages (one query each side; the recount
    command says the same, a transaction per person)."""
    visible = InboxMessage.objects.filter(deleted_at__isnull=True, archived_at__isnull=True)
    truth = {
        (a, r): (unread, unseen)
        for a, r, unread, unseen in visible.values_list("audience", "recipient_id").annotate(
            unread=Count("id", filter=Q(read_at__isnull=True)), unseen=Count("id", filter=Q(seen_at__isnull=True))
        )
    }
    columns = [f"unread_{c}" for c in ("consultation", "prescription", "order", "points", "system")]
    kept = {
        (a, r): (sum(rest[:-1]), rest[-1])
        for a, r, *rest in InboxCounter.objects.values_list("audience", "recipient_id", *columns, "unseen")
    }
    return sum(1 for key in truth.keys() | kept.keys() if truth.get(key, (0, 0)) != kept.get(key, (0, 0)))


def broadcast_rows(broadcast) -> list[str]:
    return list(
        InboxMessage.objects.filter(source_key__startswith=f"b{broadcast.pk}:").values_list("recipient_id", flat=True)
    )


@pytest.mark.django_db
def test_a_list_broadcast_writes_one_row_per_person_and_counters_stay_true(template, manual):
    people = [f"p-{i}" for i in range(1200)]
    # Someone who already holds messages (a counter with a seq), someone who turned the inbox off.
    inbox_message_put(
        audience="patient", recipient_id="p-7", title="旧", body="旧", category="order", link={}, source_key="old-1"
    )
    quiet = Recipient.objects.create(audience="patient", external_id="p-9")
    Preference.objects.create(recipient=quiet, channels={"inbox": False})

    broadcast, created = broadcast_create(
        name="会员日", template=template, channels=["inbox"], data={"day": "11-30"}, external_ids=[*people, "p-3", 5]
    )
    assert created and broadcast.total == 1201  # "p-3" twice is one person; 5 is "5"
    assert len(Broadcast.objects.get(pk=broadcast.pk).external_ids) == 1201  # kept while being written
    assert broadcast_run(broadcast_id=broadcast.pk, chunk_size=500) == "done"

    broadcast.refresh_from_db()
    assert (broadcast.total, broadcast.done, broadcast.skipped, broadcast.failed) == (1201, 1200, 1, 0)
    assert broadcast.started_at is not None and broadcast.finished_at >= broadcast.started_at
    assert broadcast.external_ids == []  # ended: the counts stay, the list of people goes
    rows = broadcast_rows(broadcast)
    assert len(rows) == len(set(rows)) == 1200 and "p-9" not in rows
    message = InboxMessage.objects.get(recipient_id="p-11", source_key__startswith="b")
    assert (message.title, message.category, message.link["h5"]) == ("会员日 11-30", "points", "/m?day=11-30")
    assert recount_corrections() == "checked 1200 people, corrected 0"

    # The live event is what inbox_message_put would have written: numbered after the counter,
    # the message as the list answers it, the counts after it.
    counter = InboxCounter.objects.get(audience="patient", recipient_id="p-7")
    assert (counter.seq, counter.unread_order, counter.unread_points, counter.unseen) == (2, 1, 1, 2)
    event = InboxEvent.objects.get(audience="patient", recipient_id="p-7", seq=2)
    mine = InboxMessage.objects.get(recipient_id="p-7", source_key__startswith="b")
    assert event.kind == "message.created"
    assert event.data["message"]["id"] == mine.pk and event.data["message"]["title"] == "会员日 11-30"
    assert event.data["message"]["unread"] is True and event.data["message"]["link"]["h5"] == "/m?day=11-30"
    assert event.data["counts"] == {
        "total": 2,
        "by_category": {"consultation": 0, "prescription": 0, "order": 1, "points": 1, "system": 0},
        "unseen": 2,
    }
    assert InboxEvent.objects.filter(kind="message.created").count() == 1201  # the old one and 1,200

    # Run again (a second worker, a resume scan): nothing more is written.
    Broadcast.objects.filter(pk=broadcast.pk).update(status="running", cursor=0)
    broadcast_run(broadcast_id=broadcast.pk, chunk_size=500)
    assert len(broadcast_rows(broadcast)) == 1200
    assert recount_corrections() == "checked 1200 people, corrected 0"


@pytest.mark.django_db
def test_a_failing_chunk_is_retried_and_a_poisoned_one_given_up(template, manual, monkeypatch):
    broadcast, _ = broadcast_create(
        name="会员日", template=template, channels=["inbox"], data={"day": "1"}, external_ids=PEOPLE_30
    )
    real, calls = fanout.inbox_message_put_to_many, []
    monkeypatch.setattr(fanout.time, "sleep", lambda s: None)

    def flaky(**kwargs):
        calls.append(kwargs["owners"][0][1])
        real(**kwargs)  # written, then the transaction is rolled back by the error
        if kwargs["owners"][0][1] == "p-10" and calls.count("p-10") == 1:
            raise RuntimeError("connection lost")
        if kwargs["owners"][0][1] == "p-20":
            raise RuntimeError("poisoned")

    monkeypatch.setattr(fanout, "inbox_message_put_to_many", flaky)
    assert broadcast_run(broadcast_id=broadcast.pk, chunk_size=10) == "done"
    broadcast.refresh_from_db()
    assert (broadcast.done, broadcast.failed, broadcast.skipped) == (20, 10, 0)
    assert "poisoned" in broadcast.last_error
    assert sorted(broadcast_rows(broadcast)) == sorted(f"p-{i}" for i in range(20))
    assert recount_corrections() == "checked 20 people, corrected 0"


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_broadcast_within_a_chunk(template, manual):
    broadcast, _ = broadcast_create(
        name="会员日", template=template, channels=["inbox"], data={"day": "1"}, external_ids=list(range(20000))
    )
    result = []

    def run():
        try:
            result.append(broadcast_run(broadcast_id=broadcast.pk, chunk_size=100))
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while Broadcast.objects.get(pk=broadcast.pk).done < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broadcast_cancel(broadcast_id=broadcast.pk)
    worker.join(timeout=60)
    assert result == ["cancelled"]
    broadcast.refresh_from_db()
    assert broadcast.status == "cancelled" and broadcast.finished_at is not None
    assert broadcast.external_ids == []
    assert 500 <= broadcast.done < 20000
    assert len(broadcast_rows(broadcast)) == broadcast.done
    assert not broadcast_cancel(broadcast_id=broadcast.pk)  # already ended
    assert broadcast_run(broadcast_id=broadcast.pk) == "cancelled"
    assert len(broadcast_rows(broadcast)) == broadcast.done


@pytest.mark.django_db
def test_a_segment_broadcast_reaches_the_directory_and_holds_sms_in_quiet_hours(template, manual):
    ChannelBinding.objects.create(
        template=template, channel="sms", external_template_id="SMS_1", params={"day": "{{ day }}"}
    )
    for i in range(40):
        Recipient.objects.create(audience="patient", external_id=f"s-{i}", phone=f"1391234{i:04d}" if i % 2 else "")
    Recipient.objects.create(audience="doctor", external_id="d-1", phone="13900000000")  # another audience
    now = timezone.localtime()
    AudiencePolicy.objects.create(
        audience="patient", quiet_start=(now - timedelta(hours=1)).time(), quiet_end=(now + timedelta(hours=1)).time()
    )
    broadcast, _ = broadcast_create(
        name="会员日", template=template, channels=["inbox", "sms"], data={"day": "2"}, segment=True
    )
    assert broadcast.total == 40
    assert broadcast_run(broadcast_id=broadcast.pk, chunk_size=7) == "done"
    broadcast.refresh_from_db()
    assert (broadcast.done, broadcast.skipped, broadcast.total) == (40, 0, 40)
    assert len(broadcast_rows(broadcast)) == 40
    sms = Delivery.objects.filter(channel="sms")
    assert sms.count() == 40
    assert sms.filter(status="deferred", last_error_code="quiet_hours").count() == 20
    assert sms.filter(status="skipped", last_error_code="no_address").count() == 20
    assert sms.first().content["params"] == {"day": "2"}

    # Only the people with a phone: a segment filtered by channel.
    second, _ = broadcast_create(
        name="短信", template=template, channels=["sms"], data={"day": "3"}, segment=True, segment_channel="sms"
    )
    assert second.total == 20


@pytest.mark.django_db
def test_bad_input_names_each_field(template):
    with pytest.raises(fanout.BroadcastRejected) as err:
        broadcast_create(
            name="x",
            template=template,
            channels=["inbox", "fax", "sms"],
            data={"day": "1"},
            external_ids=["p-1", "", "x" * 65, {"id": 1}, "a\x00b"],
        )
    assert err.value.error_code == "invalid_broadcast"
    assert set(err.value.fields) == {"channels.1", "channels.2", *(f"recipients.{i}" for i in range(1, 5))}
    with pytest.raises(fanout.BroadcastRejected) as err:
        broadcast_create(name="x", template=template, channels=["inbox"], data={}, external_ids=["p-1"])
    assert set(err.value.fields) == {"template.title"}  # {{ day }} is missing
    with pytest.raises(fanout.BroadcastRejected) as err:
        broadcast_create(name="x", template=template, channels=["inbox"], external_ids=["p"] * (LIST_MAX + 1))
    assert list(err.value.fields) == ["recipients"]
    assert not Broadcast.objects.exists()


@pytest.mark.django_db
def test_the_admin_makes_a_broadcast_from_an_uploaded_list_shows_progress_and_cancels(template, manual, admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    add = reverse("admin:scenarios_broadcast_add")
    form = {
        "name": "会员日",
        "template": template.pk,
        "channels": ["inbox"],
        "importance": "transactional",
        "source": "list",
        "segment_channel": "",
        "data": '{"day": "12-01"}',
        "ids_text": "p-1\np-2\n\n",
    }
    bad = admin_client.post(add, {**form, "ids_text": "p-1\n" + "x" * 65 + "\n"})
    assert bad.status_code == 200
    assert "Line 2" in bad.content.decode() or "第 2 行" in bad.content.decode()
    assert not Broadcast.objects.exists()

    upload = SimpleUploadedFile("ids.csv", "id,name\np-3,张三\np-1,李四\n".encode("utf-8-sig"), "text/csv")
    made = admin_client.post(add, {**form, "ids_file": upload})
    assert made.status_code == 302, made.content.decode()[:2000]
    broadcast = Broadcast.objects.get()
    assert broadcast.external_ids == ["p-1", "p-2", "p-3"] and broadcast.total == 3
    assert broadcast.created_by == "admin" and broadcast.data == {"day": "12-01"}

    changelist = reverse("admin:scenarios_broadcast_changelist")
    page = admin_client.get(changelist).content.decode()
    assert "会员日" in page and "<progress" in page
    assert admin_client.get(reverse("admin:scenarios_broadcast_change", args=[broadcast.pk])).status_code == 200
    admin_client.post(changelist, {"action": "cancel_broadcasts", "_selected_action": [broadcast.pk]})
    broadcast.refresh_from_db()
    assert broadcast.status == "cancelled"
    assert broadcast_run(broadcast_id=broadcast.pk) == "cancelled" and not broadcast_rows(broadcast)


@pytest.mark.django_db(transaction=True)
def test_open_apps_are_pushed_each_new_message_after_commit(template, manual, settings):
    """Live push as for any inbox write: one `message.created` per person on their own channel,
    published after the chunk commits, with the event's number (its reconnect id)."""
    import json

    import redis

    from inbox.changes import live_channel

    client = redis.Redis.from_url(settings.REDIS_URL)
    listener = client.pubsub()
    listener.subscribe(live_channel("patient", "p-2"), live_channel("doctor", "p-2"))
    listener.get_message(timeout=1)
    listener.get_message(timeout=1)  # the two subscribe confirmations
    broadcast, _ = broadcast_create(
        name="会员日", template=template, channels=["inbox"], data={"day": "1"}, external_ids=["p-1", "p-2", "p-3"]
    )
    broadcast_run(broadcast_id=broadcast.pk, chunk_size=2)
    got = []
    while (message := listener.get_message(timeout=1)) is not None:
        got.append(json.loads(message["data"]))
    listener.close()
    mine = InboxMessage.objects.get(recipient_id="p-2")
    event = InboxEvent.objects.get(recipient_id="p-2")
    assert len(got) == 1
    assert got[0]["type"] == "message.created" and got[0]["id"] == event.seq == 1 and got[0]["pk"] == event.pk
    assert got[0]["data"]["message"]["id"] == mine.pk and got[0]["data"]["counts"]["total"] == 1


@pytest.mark.django_db
def test_marketing_needs_an_opt_in_and_critical_ignores_preferences(template, manual):
    opted_in = Recipient.objects.create(audience="patient", external_id="p-in")
    Preference.objects.create(recipient=opted_in, categories={"points": {"inbox": True}})
    silenced = Recipient.objects.create(audience="patient", external_id="p-off")
    Preference.objects.create(recipient=silenced, channels={"inbox": False})
    people = ["p-new", "p-in", "p-off"]

    marketing, _ = broadcast_create(
        name="营销",
        template=template,
        channels=["inbox"],
        data={"day": "1"},
        external_ids=people,
        importance="marketing",
    )
    broadcast_run(broadcast_id=marketing.pk)
    marketing.refresh_from_db()
    assert (marketing.done, marketing.skipped) == (1, 2) and broadcast_rows(marketing) == ["p-in"]

    critical, _ = broadcast_create(
        name="停诊",
        template=template,
        channels=["inbox"],
        data={"day": "1"},
        external_ids=people,
        importance="critical",
    )
    broadcast_run(broadcast_id=critical.pk)
    critical.refresh_from_db()
    assert (critical.done, critical.skipped) == (3, 0) and sorted(broadcast_rows(critical)) == sorted(people)

    plain, _ = broadcast_create(
        name="通知", template=template, channels=["inbox"], data={"day": "1"}, external_ids=people
    )
    broadcast_run(broadcast_id=plain.pk)
    plain.refresh_from_db()
    assert (plain.done, plain.skipped) == (2, 1) and "p-off" not in broadcast_rows(plain)


@pytest.mark.django_db
def test_cancel_stops_the_sms_not_sent_yet_even_after_the_writing_is_done(template, manual):
    """A broadcast written in quiet hours holds its SMS until morning: cancelling it then must stop
    them (they are the broadcast's, not the writer's); what was sent stays sent; another
    broadcast's are untouched; a second cancel has nothing left to stop."""
    ChannelBinding.objects.create(
        template=template, channel="sms", external_template_id="SMS_1", params={"day": "{{ day }}"}
    )
    for i in range(12):
        Recipient.objects.create(audience="patient", external_id=f"s-{i}", phone=f"1391234{i:04d}")
    now = timezone.localtime()
    AudiencePolicy.objects.create(
        audience="patient", quiet_start=(now - timedelta(hours=1)).time(), quiet_end=(now + timedelta(hours=1)).time()
    )
    ours, _ = broadcast_create(
        name="会员日", template=template, channels=["inbox", "sms"], data={"day": "2"}, segment=True
    )
    other, _ = broadcast_create(name="另一个", template=template, channels=["sms"], data={"day": "3"}, segment=True)
    for broadcast in (ours, other):
        assert broadcast_run(broadcast_id=broadcast.pk, chunk_size=5) == "done"
    sms = Delivery.objects.filter(channel="sms", idempotency_key__startswith=f"b{ours.pk}:")
    assert sms.count() == 12 and sms.filter(status="deferred").count() == 12
    gone = sms.order_by("pk").first()
    Delivery.objects.filter(pk=gone.pk).update(status="sent")  # one went out before the cancel

    assert broadcast_cancel(broadcast_id=ours.pk)

    ours.refresh_from_db()
    assert ours.status == "cancelled" and ours.done == 12
    assert sms.filter(status="cancelled", last_error_code="broadcast_cancelled").count() == 11
    assert sms.get(pk=gone.pk).status == "sent"
    assert Delivery.objects.filter(idempotency_key__startswith=f"b{other.pk}:", status="deferred").count() == 12
    changes = DeliveryStatusChange.objects.filter(delivery__in=sms, status="cancelled", source="cancel")
    assert changes.count() == 11  # the timeline and the webhooks outbox say so
    assert len(broadcast_rows(ours)) == 12  # inbox messages already written stay
    assert not broadcast_cancel(broadcast_id=ours.pk)  # nothing left to stop
