"""Inbox reads become `read` on the delivery that put the message there.

The inbox is below channels and knows nothing of deliveries, so it is not asked to call up.
Channels scans instead: messages read since the last scan (a watermark on `read_at`, kept in the
cache; lost, the scan looks back a day, and repeats are harmless because a status already on a
delivery's timeline is a duplicate), matched by `source_key`, which is the delivery's idempotency
key. Chosen over a hook in the inbox API (an upward call) and over wrapping the inbox views in
the project layer (every read path, present and future, would have to be wrapped): the scan sees
reads from any path, costs one indexed range read every few seconds, and the live-inbox work
stays free to change how reads happen.
"""

from datetime import datetime, timedelta

from django.core.cache import cache
from django.utils import timezone

from inbox.models import InboxMessage

from .models import ChangeSource, Channel, Delivery, DeliveryStatus
from .timeline import Report, deliveries_progress

WATERMARK_KEY = "nc:inbox-read-watermark"
LOOK_BACK = timedelta(days=1)
# Reads committed a little out of order (two requests racing) are caught by looking back this far.
OVERLAP = timedelta(seconds=10)


def deliveries_mark_read(*, limit: int = 2000, now: datetime | None = None) -> int:
    """Mark `read` the inbox deliveries whose message was read since the last scan."""
    now = now or timezone.now()
    saved = cache.get(WATERMARK_KEY)
    since = datetime.fromisoformat(saved) - OVERLAP if saved else now - LOOK_BACK
    reads = list(
        InboxMessage.objects.filter(read_at__gt=since, source_key__isnull=False)
        .order_by("read_at")
        .values_list("source_key", "read_at")[:limit]
    )
    if not reads:
        return 0
    read_at = dict(reads)
    deliveries = Delivery.objects.filter(
        idempotency_key__in=list(read_at),
        channel=Channel.INBOX,
        status__in=(DeliveryStatus.SENT, DeliveryStatus.DELIVERED),
    ).values_list("pk", "idempotency_key")
    outcomes = deliveries_progress(
        reports=[Report(pk, DeliveryStatus.READ, read_at[key], ChangeSource.INBOX) for pk, key in deliveries]
    )
    moved = outcomes.count("applied")
    cache.set(WATERMARK_KEY, reads[-1][1].isoformat(), timeout=None)
    return moved
