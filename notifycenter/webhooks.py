"""Status webhooks out: the hospital's backend is told of each delivery's changes, signed, once
per event id, in order per delivery, retried for more than a day, never in the way of sending.

1. Publish: the status-change rows channels writes with each change (channels/timeline.py) are the
   outbox. `webhooks_publish` takes the unpublished ones (SKIP LOCKED), writes one WebhookDelivery
   per subscribed endpoint of the event's client, and marks them published, in one transaction: a
   process that dies before the commit leaves them unpublished for the next run.
2. Send: `webhooks_send_due` claims due rows under a short lease, at most one per (endpoint,
   subject) and only the earliest pending one, so a delivery's events arrive in order even after
   the receiver was down; it POSTs outside any transaction and settles the row after. A dead
   worker's lease runs out and the row is tried again: at least once, de-duplicated by the id.
3. A failure waits RETRY_SECONDS[attempt] (10 s up to 12 h, 28 h in all) and then gives up; the
   admin shows every answer and replays a row by hand.
4. Both run from the beat every 2 s, and are kicked right after a commit that wrote changes
   (debounced through Redis), so an event usually leaves within a second.

Signature: `Notifycenter-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, with
`Notifycenter-Timestamp` (unix seconds) and `Notifycenter-Id` (the event id) beside it.
"""

import hashlib
import hmac
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, DeliveryStatusChange
from channels.retention import delete_in_batches
from scenarios.models import Event

from .models import WebhookDelivery, WebhookEndpoint, WebhookStatus, internal_address

logger = logging.getLogger(__name__)

EVENT_FOR_STATUS = {
    DeliveryStatus.SENT: "delivery.sent",
    DeliveryStatus.DELIVERED: "delivery.delivered",
    DeliveryStatus.UNDELIVERED: "delivery.undelivered",
    DeliveryStatus.FAILED: "delivery.failed",
    DeliveryStatus.READ: "delivery.read",
    DeliveryStatus.CLICKED: "delivery.clicked",
}
# Seconds to wait after the n-th failure: 10 s, 30 s, 1 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h,
# 8 h, 12 h: 27.9 hours from the first try to the last.
RETRY_SECONDS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200)
LEASE = timedelta(seconds=30)
TIMEOUT = urllib3.Timeout(connect=3.0, read=10.0)
KEPT_ANSWERS = 20
# POSTs in flight at once per sender: a slow endpoint holds one thread, not the whole batch.
SENDERS = 8
_http = urllib3.PoolManager(num_pools=50, maxsize=SENDERS, retries=False)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature a receiver recomputes: HMAC-SHA256 over "<timestamp>.<body>", hex."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


KICK_KEY = "nc:webhooks-kick"
KICK_QUIET = 0.9  # seconds: within the key's one-second life, taken before the add was sent
KICK_RETRY = 0.2  # seconds after another process's key refused the add: a publish at most this late
_kicked_until = [0.0]


def kick() -> None:
    """After a commit that wrote status changes: publish and send soon, at most once a second.
    Not with eagerly run tasks (unit tests): there the publish would run inside the request that
    made the change; those tests publish explicitly, and the end-to-end tests run a real worker."""
    from .tasks import publish_webhooks

    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    # While the key this process set lives, any add fails: no need to ask Redis (a round trip
    # per single event otherwise). A key another process set lives for at most a second more:
    # asked again KICK_RETRY later, not at every commit (most of them, with several processes).
    if time.monotonic() < _kicked_until[0]:
        return
    try:
        at = time.monotonic()
        if cache.add(KICK_KEY, 1, timeout=1):
            _kicked_until[0] = at + KICK_QUIET
            publish_webhooks.delay()
        else:
            _kicked_until[0] = at + KICK_RETRY
    except Exception:  # the broker or Redis down: the beat scan publishes them
        logger.exception("webhook kick failed; the beat scan will publish")


def webhooks_publish(*, limit: int = 2000, now=None) -> int:
    """Turn unpublished status changes into webhook deliveries for the subscribed endpoints."""
    now = now or timezone.now()
    with transaction.atomic():
        changes = list(
            DeliveryStatusChange.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True)
            .order_by("id")
            .values("id", "delivery_id", "status", "at", "code", "detail")[:limit]
        )
        if not changes:
            return 0
        DeliveryStatusChange.objects.filter(pk__in=[c["id"] for c in changes]).update(published_at=now)
        # Not their signing secrets: publishing needs none, and one that no key decrypts (a key
        # rotation that missed it) must not stop every client's webhooks.
        endpoints = list(WebhookEndpoint.objects.filter(is_active=True).defer("signing"))
        if not endpoints:
            return 0
        rows = _rows_for(changes, endpoints, now)
        WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        if rows:
            transaction.on_commit(send_soon)
    return len(rows)


def _rows_for(changes: list[dict], endpoints: list[WebhookEndpoint], now) -> list[WebhookDelivery]:
    deliveries = {
        d["pk"]: d
        for d in Delivery.objects.filter(pk__in={c["delivery_id"] for c in changes}).values(
            "pk", "channel", "event_ref", "message_ref", "template_code", "idempotency_key", "status", "finished_at"
        )
    }
    clients = dict(
        Event.objects.filter(pk__in={d["event_ref"] for d in deliveries.values() if d["event_ref"]}).values_list(
            "pk", "client"
        )
    )
    by_client: dict[str, list[WebhookEndpoint]] = {}
    for endpoint in endpoints:
        by_client.setdefault(endpoint.client, []).append(endpoint)
    settled = _settled_messages({d["message_ref"] for d in deliveries.values() if d["message_ref"]})
    # (delivery, payloads) in the changes' order; each settled message once, after all of them, so
    # that it is written (and so sent) after every event of its deliveries in this batch.
    planned: list[tuple[dict, list]] = []
    settling: dict[int, dict] = {}
    for change in changes:
        d = deliveries.get(change["delivery_id"])
        if d is None:
            continue
        name = EVENT_FOR_STATUS.get(change["status"])
        if name:
            planned.append((d, [(name, f"evt_{change['id']}", _subject(d), _delivery_payload(name, change, d))]))
        if d["message_ref"] in settled and d["finished_at"] is not None:
            settling.setdefault(d["message_ref"], d)
    for message_ref, d in settling.items():
        payload = {
            "id": f"msg_{message_ref}_settled",
            "type": "message.settled",
            "created_at": now.isoformat(),
            "data": {"message_id": message_ref, "event_id": d["event_ref"]},
        }
        planned.append((d, [("message.settled", payload["id"], f"m:{message_ref}", payload)]))
    rows = []
    for d, payloads in planned:
        for endpoint in by_client.get(clients.get(d["event_ref"], ""), []):
            for name, event_id, subject, payload in payloads:
                if name in endpoint.events:
                    rows.append(
                        WebhookDelivery(
                            endpoint=endpoint,
                            event_id=event_id,
                            event=name,
                            subject=subject,
                            payload=payload,
                            next_try_at=now,
                        )
                    )
    return rows


def _subject(d: dict) -> str:
    """What a delivery's events are kept in order within: its message (so that the message's
    `message.settled`, of the same subject and written after them, is sent after every event of
    its deliveries), or the delivery itself when it has no message (an SMS code)."""
    return f"m:{d['message_ref']}" if d["message_ref"] else f"d:{d['pk']}"


def _settled_messages(message_refs: set[int]) -> set[int]:
    """Messages none of whose deliveries is still under way."""
    if not message_refs:
        return set()
    busy = set(
        Delivery.objects.filter(message_ref__in=message_refs, finished_at__isnull=True).values_list(
            "message_ref", flat=True
        )
    )
    return message_refs - busy


def _delivery_payload(name: str, change: dict, d: dict) -> dict:
    return {
        "id": f"evt_{change['id']}",
        "type": name,
        "created_at": change["at"].isoformat(),
        "data": {
            "delivery_id": d["pk"],
            "event_id": d["event_ref"],
            "message_id": d["message_ref"],
            "channel": d["channel"],
            "template_code": d["template_code"],
            "status": change["status"],
            "code": change["code"],
            "detail": change["detail"],
        },
    }


def send_soon() -> None:
    from .tasks import send_webhooks

    try:
        send_webhooks.delay()
    except Exception:
        logger.exception("webhook send enqueue failed; the beat scan will send")


def webhooks_send_due(*, limit: int = 200, now=None) -> int:
    """POST the due webhook deliveries, each subject's earliest pending one only, several at a
    time (SENDERS threads; one per subject, so the order holds); settle them in one statement.
    Returns how many the endpoints took."""
    now = now or timezone.now()
    earlier = WebhookDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        subject=OuterRef("subject"),
        status=WebhookStatus.PENDING,
        pk__lt=OuterRef("pk"),
    )
    with transaction.atomic():
        rows = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=WebhookStatus.PENDING, next_try_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .exclude(Exists(earlier))
            .select_related("endpoint")
            .defer("endpoint__signing")
            .order_by("id")[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows]).update(lease_until=now + LEASE)
    if not rows:
        return 0
    secrets = _signing_secrets({row.endpoint_id for row in rows})
    # Checked again at each round (a name may resolve elsewhere than when it was registered), once
    # per endpoint: not a name lookup per webhook.
    internal = {} if settings.WEBHOOK_ALLOW_INTERNAL_URLS else _internal_endpoints(rows)
    with ThreadPoolExecutor(max_workers=min(SENDERS, len(rows))) as pool:
        answers = list(pool.map(lambda row: _post(row, secrets[row.endpoint_id], internal), rows))
    settled = timezone.now()
    table = _retry_table()
    for row, (status, text, ms) in zip(rows, answers, strict=True):
        row.attempts += 1
        row.lease_until = None
        row.answers = [*row.answers, {"at": settled.isoformat(), "status": status, "body": text, "ms": ms}][
            -KEPT_ANSWERS:
        ]
        if 200 <= status < 300:
            row.status, row.delivered_at = WebhookStatus.DELIVERED, settled
        elif row.attempts > len(table):
            row.status = WebhookStatus.FAILED
        else:
            row.next_try_at = settled + timedelta(seconds=retry_seconds(row.attempts))
    WebhookDelivery.objects.bulk_update(
        rows, ["attempts", "lease_until", "answers", "status", "delivered_at", "next_try_at"], batch_size=500
    )
    return sum(r.status == WebhookStatus.DELIVERED for r in rows)


NOT_SENT_UNREADABLE = (
    "not sent: the endpoint's signing secret cannot be decrypted with FIELD_ENCRYPTION_KEYS "
    "(docs/runbook.md, Rotate the credential key)"
)


def _signing_secrets(endpoint_ids: set[int]) -> dict[int, str | None]:
    """Each endpoint's signing secret, read here (not in the sending threads, which would each open
    a database connection); None for one that no key decrypts: its rows are answered as not sent
    and retried, the other endpoints' go out."""
    secrets: dict[int, str | None] = {}
    for endpoint_id in endpoint_ids:
        try:
            signing = WebhookEndpoint.objects.filter(pk=endpoint_id).values_list("signing", flat=True).first()
        except ImproperlyConfigured:
            logger.error("webhook endpoint %s: its signing secret cannot be decrypted; its webhooks wait", endpoint_id)
            secrets[endpoint_id] = None
            continue
        secrets[endpoint_id] = (signing or {}).get("secret", "")
    return secrets


def _internal_endpoints(rows: list[WebhookDelivery]) -> dict[int, bool]:
    """Whether each endpoint's host is this machine or link-local (notifycenter.models.internal_address)."""
    urls = {row.endpoint_id: row.endpoint.url for row in rows}
    return {pk: internal_address(urlsplit(url).hostname or "") for pk, url in urls.items()}


def _post(row: WebhookDelivery, secret: str | None, internal: dict[int, bool]) -> tuple[int, str, int]:
    """One signed POST; the endpoint's status (0: no answer), the start of its body, and the ms."""
    if secret is None:
        return 0, NOT_SENT_UNREADABLE, 0
    body = json.dumps(row.payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "notifycenter-webhooks/1",
        "Notifycenter-Id": row.event_id,
        "Notifycenter-Timestamp": str(timestamp),
        "Notifycenter-Signature": f"v1={sign(secret, timestamp, body)}",
    }
    if internal.get(row.endpoint_id):
        return 0, "not sent: the URL resolves to this server or a link-local address", 0
    t0 = time.monotonic()
    try:
        answer = _http.request("POST", row.endpoint.url, body=body, headers=headers, timeout=TIMEOUT)
        status, text = answer.status, answer.data[:500].decode(errors="replace")
    except urllib3.exceptions.HTTPError as err:
        status, text = 0, repr(err)[:500]
    return status, text, int((time.monotonic() - t0) * 1000)


def _retry_table() -> tuple:
    return tuple(getattr(settings, "WEBHOOK_RETRY_SECONDS", None) or RETRY_SECONDS)


def retry_seconds(attempts: int) -> float:
    table = _retry_table()
    return table[min(attempts, len(table)) - 1]


def webhook_deliveries_purge(*, older_than_days: int, batch_size: int = 5000, max_batches: int | None = None) -> int:
    """Delete the webhook deliveries made more than `older_than_days` ago (EVENT_RETENTION_DAYS),
    delivered or given up: they name deliveries and messages the event purge has taken, and keep
    the endpoint's answers. One still pending stays. Returns how many went; 0 days or less keeps all."""
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = WebhookDelivery.objects.filter(created_at__lt=cutoff).exclude(status=WebhookStatus.PENDING)
    # The oldest are the first ids.
    return delete_in_batches(old.order_by("id"), batch_size=batch_size, max_batches=max_batches)


def webhook_replay(*, ids: list[int]) -> int:
    """The admin's replay: these go out again at once, whatever happened before."""
    now = timezone.now()
    return WebhookDelivery.objects.filter(pk__in=ids).update(
        status=WebhookStatus.PENDING, next_try_at=now, lease_until=None, delivered_at=None
    )


def webhook_endpoint_create(*, client: str, url: str, secret: str, events: list[str]) -> WebhookEndpoint:
    """Register an endpoint for a client's backend."""
    return WebhookEndpoint.objects.create(client=client, url=url, signing={"secret": secret}, events=events)
