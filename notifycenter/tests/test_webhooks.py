"""Status webhooks out, against a real HTTP receiver that is down for a while and then up."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from channels.models import Delivery, DeliveryStatus, DeliveryStatusChange
from channels.reads import deliveries_mark_read
from notifycenter.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from notifycenter.webhooks import webhook_replay, webhooks_publish, webhooks_send_due
from tests.clients import backend_client
from tests.factories import paid_event

SECRET = "whsec-0123456789abcdef"
pytestmark = pytest.mark.django_db(transaction=True)


def verify(secret: str, headers, body: bytes) -> bool:
    """The receiver's check, as README documents it."""
    timestamp = headers["Notifycenter-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["Notifycenter-Signature"], f"v1={expected}")


class Receiver:
    """A hospital backend's endpoint: answers 503 while down; records what it took."""

    def __init__(self):
        self.down = False
        self.taken: list[dict] = []
        self.refused = 0
        self.forged = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.down:
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                if not verify(SECRET, self.headers, body):
                    receiver.forged += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                event = json.loads(body)
                assert event["id"] == self.headers["Notifycenter-Id"]
                receiver.taken.append(event)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def drain(rounds=50):
    for _ in range(rounds):
        webhooks_publish()
        webhooks_send_due()
        if not WebhookDelivery.objects.filter(status=WebhookStatus.PENDING).exists():
            return


def test_webhooks_api_validates_and_scopes(catalog):
    his = backend_client(scopes=("events", "webhooks"))
    bad = his.post(
        "/api/v1/webhooks", {"url": "ftp://x", "secret": "short", "events": ["delivery.eaten"]}, format="json"
    )
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"url", "secret", "events.0"}
    made = his.post(
        "/api/v1/webhooks",
        {"url": "https://his.example/hooks", "secret": SECRET, "events": ["delivery.read"]},
        format="json",
    )
    assert made.status_code == 201 and "secret" not in made.json()
    assert [w["id"] for w in his.get("/api/v1/webhooks").json()] == [made.json()["id"]]
    other = backend_client(client="lab", scopes=("webhooks",))
    assert other.get("/api/v1/webhooks").json() == []
    assert other.delete(f"/api/v1/webhooks/{made.json()['id']}").status_code == 404
    assert backend_client().get("/api/v1/webhooks").status_code == 403
    assert his.delete(f"/api/v1/webhooks/{made.json()['id']}").status_code == 204
    assert his.get("/api/v1/webhooks").json() == []


def test_receiver_down_then_up_gets_every_status_once_in_order(settings, catalog, receiver, patient_app):
    settings.WEBHOOK_RETRY_SECONDS = [0] * 30  # retry at once: the test plays the hours
    his = backend_client(scopes=("events", "webhooks"))
    events = ["delivery.sent", "delivery.read", "delivery.failed", "message.settled"]
    assert (
        his.post(
            "/api/v1/webhooks", {"url": receiver.url, "secret": SECRET, "events": events}, format="json"
        ).status_code
        == 201
    )

    receiver.down = True
    for _ in range(3):
        assert his.post("/api/v1/events", paid_event(), format="json").status_code == 202
    inbox = list(Delivery.objects.filter(channel="inbox"))
    assert inbox and {d.status for d in inbox} == {DeliveryStatus.SENT}
    for message in patient_app.get("/api/v1/inbox/messages").json()["results"]:
        assert patient_app.post(f"/api/v1/inbox/messages/{message['id']}/read").status_code in (200, 204)
    assert deliveries_mark_read() == 3
    for _ in range(5):  # the receiver is down through several rounds of tries
        webhooks_publish()
        webhooks_send_due()
    assert receiver.refused > 0 and receiver.taken == []
    assert WebhookDelivery.objects.filter(status=WebhookStatus.PENDING, attempts__gt=1).exists()

    receiver.down = False
    drain()
    assert receiver.forged == 0
    ids = [e["id"] for e in receiver.taken]
    assert len(ids) == len(set(ids)) == WebhookDelivery.objects.count()
    assert not WebhookDelivery.objects.exclude(status=WebhookStatus.DELIVERED).exists()
    per_delivery: dict[int, list[str]] = {}
    for e in receiver.taken:
        if e["type"].startswith("delivery."):
            per_delivery.setdefault(e["data"]["delivery_id"], []).append(e["type"])
    patient_inbox = [d.pk for d in inbox if d.address.startswith("patient:")]
    assert {k: v for k, v in per_delivery.items() if k in patient_inbox} == {
        pk: ["delivery.sent", "delivery.read"] for pk in patient_inbox
    }
    # Each delivery's changes came in the order they happened (ids of the change rows rise).
    for pk, _ in per_delivery.items():
        mine = [int(e["id"][4:]) for e in receiver.taken if e["data"].get("delivery_id") == pk]
        assert mine == sorted(mine)
    assert sum(e["type"] == "message.settled" for e in receiver.taken) >= 1
    changes = DeliveryStatusChange.objects.filter(status__in=["sent", "read", "failed"]).count()
    assert sum(e["type"].startswith("delivery.") for e in receiver.taken) == changes


def test_a_worker_that_dies_mid_post_loses_nothing_and_replay_resends(settings, catalog, receiver):
    settings.WEBHOOK_RETRY_SECONDS = [0] * 30
    his = backend_client(scopes=("events", "webhooks"))
    his.post("/api/v1/webhooks", {"url": receiver.url, "secret": SECRET, "events": ["delivery.sent"]}, format="json")
    his.post("/api/v1/events", paid_event(), format="json")
    # A publish that dies before its commit leaves the changes unpublished.
    DeliveryStatusChange.objects.update(published_at=None)
    WebhookDelivery.objects.all().delete()
    receiver.taken.clear()
    webhooks_publish()
    # A sender that claimed rows and died: the lease runs out and another takes them.
    from django.utils import timezone

    WebhookDelivery.objects.update(lease_until=timezone.now() - timezone.timedelta(seconds=1))
    drain()
    assert len(receiver.taken) == WebhookDelivery.objects.count() > 0
    row = WebhookDelivery.objects.first()
    assert webhook_replay(ids=[row.pk]) == 1
    drain()
    assert [e["id"] for e in receiver.taken].count(row.event_id) == 2  # a replay is the same id again
    assert len(WebhookDelivery.objects.get(pk=row.pk).answers) == 2
    assert WebhookEndpoint.objects.count() == 1


def test_a_kick_asks_redis_once_while_its_own_key_lives(settings, monkeypatch):
    """Single events commit one after another: the kick's key (one second) is this process's own
    for a while, and no add could succeed meanwhile, so none is sent; after it, one is."""
    from notifycenter import webhooks

    settings.CELERY_TASK_ALWAYS_EAGER = False
    adds, published = [], []
    monkeypatch.setattr(webhooks.cache, "add", lambda key, value, timeout: adds.append(key) or True)
    monkeypatch.setattr("notifycenter.tasks.publish_webhooks.delay", lambda: published.append(1))
    clock = [1000.0]
    monkeypatch.setattr(webhooks, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(webhooks, "_kicked_until", [0.0])

    for _ in range(5):
        webhooks.kick()
        clock[0] += 0.1
    assert (len(adds), len(published)) == (1, 1)

    clock[0] += 0.5  # past the key's life
    webhooks.kick()
    assert (len(adds), len(published)) == (2, 2)


def test_a_kick_refused_by_another_process_key_asks_again_a_little_later(settings, monkeypatch):
    """Another process's key lives at most a second: this process asks again KICK_RETRY later,
    not at every commit of its own meanwhile (a Redis round trip each), and kicks once it may."""
    from notifycenter import webhooks

    settings.CELERY_TASK_ALWAYS_EAGER = False
    adds, published, held_until = [], [], [1000.5]
    clock = [1000.0]

    def add(key, value, timeout):
        adds.append(key)
        return clock[0] >= held_until[0]

    monkeypatch.setattr(webhooks.cache, "add", add)
    monkeypatch.setattr("notifycenter.tasks.publish_webhooks.delay", lambda: published.append(clock[0]))
    monkeypatch.setattr(webhooks, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(webhooks, "_kicked_until", [0.0])

    for at in (0.0, 0.07, 0.14, 0.21, 0.28, 0.35, 0.42, 0.49):  # commits while the other key lives
        clock[0] = 1000.0 + at
        webhooks.kick()
    assert (len(adds), published) == (3, [])  # asked at 0, 0.21 and 0.42 s
    clock[0] = 1000.56  # the other key is gone; this process asks again at 0.62 s
    webhooks.kick()
    assert (len(adds), published) == (3, [])
    clock[0] = 1000.63
    webhooks.kick()
    assert (len(adds), published) == (4, [1000.63])


def test_quiet_changes_are_written_published_and_the_publisher_leaves_them(catalog, receiver):
    """A delivery queued, held or being sent is news to no subscriber: its timeline row is born
    published, so the publisher reads and rewrites only the rows a webhook may come of."""
    from channels.models import QUIET
    from notifycenter.webhooks import EVENT_FOR_STATUS

    assert not QUIET & set(EVENT_FOR_STATUS)  # no webhook names a quiet status
    his = backend_client(scopes=("events", "webhooks"))
    events = ["delivery.sent", "message.settled"]
    assert his.post("/api/v1/webhooks", {"url": receiver.url, "secret": SECRET, "events": events}, format="json")
    assert his.post("/api/v1/events", paid_event(), format="json").status_code == 202

    created = DeliveryStatusChange.objects.filter(source="create")
    quiet = created.filter(status__in=QUIET)
    assert quiet.exists() and not quiet.filter(published_at__isnull=True).exists()
    loud = created.exclude(status__in=QUIET)  # skipped at once (no address): it may settle a message
    assert set(loud.values_list("published_at", flat=True)) <= {None}
    before = {row.pk: row.published_at for row in quiet}
    webhooks_publish()
    assert {row.pk: row.published_at for row in quiet.all()} == before  # not rewritten
    assert not DeliveryStatusChange.objects.filter(published_at__isnull=True).exists()


def test_an_endpoint_no_key_decrypts_holds_only_its_own_webhooks(settings, catalog, receiver):
    """A key rotation that missed one endpoint (docs/runbook.md): the others' webhooks go out; its
    own wait, each with why, and go once the old key is back."""
    from cryptography.fernet import Fernet
    from django.db import connection

    from notifycenter.webhooks import NOT_SENT_UNREADABLE

    settings.WEBHOOK_RETRY_SECONDS = [0] * 30
    his = backend_client(scopes=("events", "webhooks"))
    for url in (receiver.url, receiver.url + "?lost-key"):
        answer = his.post(
            "/api/v1/webhooks", {"url": url, "secret": SECRET, "events": ["delivery.sent"]}, format="json"
        )
        assert answer.status_code == 201, answer.content
    lost = WebhookEndpoint.objects.get(url__endswith="?lost-key")
    sealed = Fernet(Fernet.generate_key()).encrypt(json.dumps({"secret": SECRET}).encode()).decode()
    with connection.cursor() as cursor:  # sealed with a key FIELD_ENCRYPTION_KEYS no longer holds
        cursor.execute("UPDATE notifycenter_webhookendpoint SET signing = %s WHERE id = %s", [sealed, lost.pk])

    his.post("/api/v1/events", paid_event(), format="json")
    for _ in range(3):
        webhooks_publish()
        webhooks_send_due()

    kept = WebhookDelivery.objects.filter(endpoint=lost)
    assert kept.exists() and not kept.exclude(status=WebhookStatus.PENDING).exists()
    assert all(row.answers[-1]["body"] == NOT_SENT_UNREADABLE for row in kept)
    others = WebhookDelivery.objects.exclude(endpoint=lost)
    assert others.count() == kept.count() and not others.exclude(status=WebhookStatus.DELIVERED).exists()
    assert len(receiver.taken) == others.count()
