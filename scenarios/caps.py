"""Caps and de-duplication per rule and person (step 4 of scenarios/policies.py): counted
atomically in Redis, or in the database under a lock where there is no Redis."""

import hashlib
import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import connection

from channels.models import Delivery, DeliveryStatus

from .models import Message, MessageStatus, Rule

logger = logging.getLogger(__name__)

# Summaries of messages over a cap: scheduled messages with this subject (the rule's id).
DIGEST_SUBJECT = "cap_summary"


def _lock_key(rule_id: int, recipient_id: int) -> int:
    digest = hashlib.blake2b(f"policy:{rule_id}:{recipient_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock(pairs: set[tuple[int, int]]) -> None:
    """Serialize concurrent transactions deciding caps for the same rule and person, until commit.
    In sorted order, so two batches never wait on each other in a circle. SQLite (the embedded
    single-process setup) serializes writers by itself."""
    if connection.vendor != "postgresql" or not pairs:
        return
    with connection.cursor() as cursor:
        for key in sorted(_lock_key(*pair) for pair in pairs):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _dedup_value(message: Message, rule: Rule):
    data = {**(message.event.data or {}), **(message.data_overrides or {})}
    value = data.get(rule.dedup_field)
    return None if value is None else str(value)[:128]


class Counts:
    """Caps and de-duplication for one batch: the database's view plus what this batch decided."""

    def __init__(self, now: datetime, batch_ids: list[int]):
        self.now, self.batch_ids = now, batch_ids
        self.sent: dict[tuple, int] = {}
        self.seen: set[tuple] = set()
        self.collapsed: set[int] = set()

    def collapse(self, message: Message, rule: Rule) -> None:
        """Count a capped message into the person's pending summary for this rule, or start one
        due at the window's end (once per message, whatever its capped channels)."""
        if message.pk in self.collapsed:
            return
        self.collapsed.add(message.pk)
        pending = (
            Message.objects.filter(
                subject_type=DIGEST_SUBJECT,
                subject_id=str(rule.pk),
                recipient_id=message.recipient_id,
                status=MessageStatus.SCHEDULED,
            )
            .order_by("pk")
            .first()
        )
        if pending is not None:
            count = int(pending.data_overrides.get("collapsed_count", 0)) + 1
            pending.data_overrides = {**pending.data_overrides, "collapsed_count": count}
            pending.save(update_fields=["data_overrides"])
            return
        Message.objects.create(
            event_id=message.event_id,
            template_id=rule.collapse_template_id,
            recipient_id=message.recipient_id,
            audience=message.audience,
            subject_type=DIGEST_SUBJECT,
            subject_id=str(rule.pk),
            status=MessageStatus.SCHEDULED,
            status_reason=f"summary of messages over the cap of {rule}",
            due_at=self.now + timedelta(minutes=rule.cap_window_minutes),
            data_overrides={"collapsed_count": 1},
        )

    def duplicate(self, message: Message, rule: Rule) -> bool:
        value = _dedup_value(message, rule)
        if value is None:
            return False
        key = (rule.pk, message.recipient_id, value)
        if key in self.seen:
            Message.objects.filter(pk=message.pk).update(dedup_key=value)
            return True
        self.seen.add(key)
        found = (
            Message.objects.filter(
                rule_id=rule.pk,
                recipient_id=message.recipient_id,
                dedup_key=value,
                dispatched_at__gte=self.now - timedelta(minutes=rule.dedup_window_minutes),
            )
            .exclude(pk__in=self.batch_ids)
            .exists()
        )
        Message.objects.filter(pk=message.pk).update(dedup_key=value)
        return found

    def over_cap(self, message: Message, rule: Rule, channel: str) -> bool:
        key = (rule.pk, message.recipient_id, channel)
        if key not in self.sent:
            # At most cap_count rows are read: a busy person's window costs no more than a quiet one's.
            self.sent[key] = (
                Delivery.objects.filter(
                    recipient_id=message.recipient_id,
                    channel=channel,
                    template_code=message.template.code,
                    created_at__gte=self.now - timedelta(minutes=rule.cap_window_minutes),
                )
                .exclude(status__in=(DeliveryStatus.SKIPPED, DeliveryStatus.CANCELLED))
                .values("pk")[: rule.cap_count]
                .count()
            )
        if self.sent[key] >= rule.cap_count:
            return True
        self.sent[key] += 1
        return False


class RedisCounts(Counts):
    """Caps and de-duplication in the shared Redis, atomic without a database lock: a cap is a
    counter that lives a window from the first message it counts (INCR), a de-duplication key
    is set if absent (SET NX) for the window. One round trip each, a few statements fewer per
    event than the database's count. A counter taken by a transaction that then rolls back stays
    taken: a cap errs on the side of fewer messages."""

    def __init__(self, now: datetime, batch_ids: list[int]):
        super().__init__(now, batch_ids)
        self.redis = _redis()

    def duplicate(self, message: Message, rule: Rule) -> bool:
        try:
            return self._duplicate(message, rule)
        except redis.RedisError:
            # Redis is a helper (docs/runbook.md): without it, counted in the database.
            logger.warning("caps: Redis unavailable, de-duplication counted in the database")
            lock({(rule.pk, message.recipient_id)})
            return super().duplicate(message, rule)

    def over_cap(self, message: Message, rule: Rule, channel: str) -> bool:
        try:
            return self._over_cap(message, rule, channel)
        except redis.RedisError:
            logger.warning("caps: Redis unavailable, caps counted in the database")
            lock({(rule.pk, message.recipient_id)})
            return super().over_cap(message, rule, channel)

    def _duplicate(self, message: Message, rule: Rule) -> bool:
        value = _dedup_value(message, rule)
        if value is None:
            return False
        digest = hashlib.blake2b(value.encode(), digest_size=12).hexdigest()
        key = f"nc:dedup:{rule.pk}:{message.recipient_id}:{digest}"
        # The event's own key as the value: the same event planned again (a retried transaction)
        # is not its own duplicate.
        mine = f"{message.event.client}:{message.event.idempotency_key}"
        if self.redis.set(key, mine, nx=True, ex=rule.dedup_window_minutes * 60):
            return False
        return (self.redis.get(key) or b"").decode() != mine

    def _over_cap(self, message: Message, rule: Rule, channel: str) -> bool:
        key = f"nc:cap:{rule.pk}:{message.recipient_id}:{channel}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, 0, nx=True, ex=rule.cap_window_minutes * 60)
        pipe.incr(key)
        _, count = pipe.execute()
        return count > rule.cap_count

    def collapse(self, message: Message, rule: Rule) -> None:
        lock({(rule.pk, message.recipient_id)})  # one summary per person, however many race
        super().collapse(message, rule)


_client = None


def _redis():
    global _client
    if _client is None:
        # Short timeouts: a Redis that hangs must not hold an event's transaction.
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client
