from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from channels import providers
from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
from channels.providers import DeliveryResult
from channels.providers.testing import RecordingBackend
from channels.sending import deliveries_requeue_due, delivery_send
from channels.services import DeliveryRequest, deliveries_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def push(monkeypatch):
    def install(*results):
        backend = RecordingBackend(*results)
        monkeypatch.setitem(providers.BACKENDS, "app_push", backend)
        return backend

    return install


@pytest.fixture
def doctor():
    return Recipient.objects.create(audience="doctor", external_id="d-17", push_registration_ids=["1a0018970aa"])


def queued(recipient, key="k1") -> Delivery:
    (delivery,) = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="app_push", recipient=recipient, content={"title": "t", "body": "b"}, idempotency_key=key
            )
        ]
    )
    return delivery


def test_a_transient_failure_is_retried_later_with_backoff_and_then_sent(push, doctor):
    backend = push(DeliveryResult("transient", "-1", "system error", {"errcode": -1, "errmsg": "system error"}))
    delivery = queued(doctor)

    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.not_before > timezone.now() + timedelta(seconds=2)
    assert (delivery.last_error_code, delivery.last_error_message) == ("-1", "system error")
    assert delivery_send(delivery_id=delivery.pk) is None  # not due yet: nothing sent

    Delivery.objects.filter(pk=delivery.pk).update(not_before=timezone.now())
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert [a.outcome for a in delivery.attempts.all()] == ["transient", "sent"]
    assert delivery.attempts.first().raw_response == {"errcode": -1, "errmsg": "system error"}
    assert len(backend.sent) == 2


def test_a_permanent_failure_is_final_with_the_providers_words(push, doctor):
    push(DeliveryResult("permanent", "43101", "user refuse to accept the msg"))
    delivery = queued(doctor)

    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()

    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error_message == "user refuse to accept the msg"
    assert delivery.finished_at is not None


def test_transient_failures_stop_at_the_channels_maximum(push, doctor):
    push(*[DeliveryResult("transient", "45009", "reach max api daily quota limit")] * 10)
    delivery = queued(doctor)

    for _ in range(10):
        Delivery.objects.filter(pk=delivery.pk).update(not_before=timezone.now())
        delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()

    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempt_count == 6


def test_a_crashing_backend_is_kept_as_an_attempt_not_lost(push, doctor):
    push(RuntimeError("bug"))
    delivery = queued(doctor)

    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()

    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.attempts.get().error_code == "internal_error"
    assert "bug" in delivery.last_error_message


def test_sending_twice_sends_once(push, doctor):
    backend = push()
    delivery = queued(doctor)

    delivery_send(delivery_id=delivery.pk)
    delivery_send(delivery_id=delivery.pk)

    assert len(backend.sent) == 1


def test_the_outbox_scan_picks_lost_and_due_rows_and_frees_expired_claims(
    push, doctor, django_capture_on_commit_callbacks
):
    push()
    lost, later, stuck = queued(doctor, "lost"), queued(doctor, "later"), queued(doctor, "stuck")
    held = queued(doctor, "held")
    queued(doctor, "fresh")  # enqueued just now: a worker has it
    now = timezone.now()
    Delivery.objects.filter(pk=lost.pk).update(enqueued_at=now - timedelta(minutes=5))
    Delivery.objects.filter(pk=later.pk).update(not_before=now + timedelta(hours=1), enqueued_at=None)
    # Claimed by a worker that died before calling: its lease ran out a second ago.
    Delivery.objects.filter(pk=stuck.pk).update(status="sending", claim="dead", lease_until=now - timedelta(seconds=1))
    # Claimed by a live worker: its lease still runs.
    Delivery.objects.filter(pk=held.pk).update(status="sending", claim="live", lease_until=now + timedelta(seconds=9))

    with django_capture_on_commit_callbacks() as callbacks:
        picked = deliveries_requeue_due(now=now)

    assert picked == 2
    # One enqueue for the two; the freed claim's change (back to queued) is quiet: written
    # published, announced to nobody (channels/timeline.py).
    assert len(callbacks) == 1
    requeued = Delivery.objects.get(idempotency_key="stuck").status_changes.last()
    assert (requeued.code, requeued.status) == ("worker_lost", "queued") and requeued.published_at is not None
    refreshed = {d.idempotency_key: d for d in Delivery.objects.all()}
    assert refreshed["lost"].enqueued_at == now
    assert refreshed["stuck"].status == "queued" and refreshed["stuck"].enqueued_at == now
    assert refreshed["stuck"].claim == "" and refreshed["stuck"].lease_until is None
    assert refreshed["held"].status == "sending" and refreshed["held"].claim == "live"
    assert refreshed["fresh"].enqueued_at != now
    assert refreshed["later"].enqueued_at is None


def test_a_chunk_the_broker_refused_is_taken_by_the_next_scan_not_after_the_requeue_age(
    push, doctor, monkeypatch, django_capture_on_commit_callbacks
):
    """Redis down at enqueue time: the rows must not wait REQUEUE_AFTER_SECONDS after Redis is back."""
    from channels import services, tasks

    push()
    refused = queued(doctor, "refused")
    Delivery.objects.filter(pk=refused.pk).update(enqueued_at=timezone.now())

    def broker_down(chunk):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.deliver_many, "delay", broker_down)
    services.enqueue([(refused.pk, "app_push")])
    assert Delivery.objects.get(pk=refused.pk).enqueued_at is None

    sent = []
    monkeypatch.setattr(tasks.deliver_many, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries_requeue_due() == 1
    assert sent == [[refused.pk]]


def test_channel_credentials_are_encrypted_at_rest():
    account = ChannelAccount.objects.create(
        name="wx", channel="wechat_oa_template", provider="wechat", credentials={"app_secret": "s3cr3t-value"}
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM channels_channelaccount WHERE id = %s", [account.pk])
        stored = cursor.fetchone()[0]

    assert "s3cr3t" not in stored
    assert ChannelAccount.objects.get(pk=account.pk).credentials == {"app_secret": "s3cr3t-value"}


def inbox_rows(count: int, title: str, key: str) -> list[Delivery]:
    """An inbox delivery to each of `count` patients (p-0, p-1, …), its key `{key}-p-{i}`."""
    people = [Recipient.objects.create(audience="patient", external_id=f"p-{i}") for i in range(count)]
    return deliveries_create(
        requests=[
            DeliveryRequest(
                channel="inbox",
                recipient=p,
                content={"title": title, "body": "正文", "category": "system"},
                idempotency_key=f"{key}-{p.external_id}",
            )
            for p in people
        ]
    )


def test_inbox_deliveries_are_written_in_bulk_once_each():
    from channels.sending import deliveries_send
    from inbox.models import InboxMessage

    rows = inbox_rows(5, "群发", "fan")
    ids = [r.pk for r in rows]

    deliveries_send(delivery_ids=ids)
    deliveries_send(delivery_ids=ids)  # a redelivered task

    assert InboxMessage.objects.filter(title="群发").count() == 5
    settled = Delivery.objects.filter(pk__in=ids)
    assert {d.status for d in settled} == {DeliveryStatus.SENT}
    assert {d.attempts.count() for d in settled} == {1}
    message = InboxMessage.objects.get(recipient_id="p-3")
    attempt = Delivery.objects.get(idempotency_key="fan-p-3").attempts.get()
    assert attempt.raw_response == {"inbox_message_id": message.pk}
    assert message.source_key == "fan-p-3"


def test_one_events_deliveries_go_as_one_task_and_large_sets_in_chunks_of_their_kind(settings):
    from channels.services import delivery_chunks

    settings.PROVIDER_CHUNK = 3
    # One event: its inbox row and its provider sends, one broker message.
    assert delivery_chunks([(1, "inbox"), (2, "sms"), (3, "wecom_robot")]) == [[1, 2, 3]]
    assert delivery_chunks([]) == []
    # More than a task of either kind: inbox rows 200 a task, provider sends PROVIDER_CHUNK a task.
    many = [(pk, "inbox") for pk in range(450)] + [(1000 + pk, "sms" if pk % 2 else "app_push") for pk in range(5)]
    assert [len(c) for c in delivery_chunks(many)] == [200, 200, 50, 3, 2]
    assert sorted(pk for c in delivery_chunks(many) for pk in c) == sorted(pk for pk, _ in many)


def test_a_task_for_one_inbox_row_takes_its_due_neighbours_along_once_each(django_assert_max_num_queries):
    """Single events make a task each; the first to run writes every due inbox row (up to
    LOCAL_BATCH) in its transaction, and the later tasks find theirs already sent."""
    from channels.sending import deliveries_send
    from inbox.models import InboxMessage

    rows = inbox_rows(4, "单条", "one")
    later = rows[-1]
    Delivery.objects.filter(pk=later.pk).update(not_before=timezone.now() + timedelta(hours=1))

    deliveries_send(delivery_ids=[rows[0].pk])
    assert set(Delivery.objects.filter(status=DeliveryStatus.SENT).values_list("pk", flat=True)) == {
        r.pk for r in rows[:3]
    }
    assert Delivery.objects.get(pk=later.pk).status == DeliveryStatus.QUEUED  # not due: left alone

    # The neighbours' own tasks: nothing left to write (a look-up and two empty locked reads each).
    with django_assert_max_num_queries(10):
        for r in rows[1:3]:
            deliveries_send(delivery_ids=[r.pk])
    assert InboxMessage.objects.filter(title="单条").count() == 3
    assert {d.attempts.count() for d in Delivery.objects.filter(pk__in=[r.pk for r in rows[:3]])} == {1}
