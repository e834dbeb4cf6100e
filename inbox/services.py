from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import InboxMessage


def inbox_message_put(
    *,
    audience: str,
    recipient_id: str,
    title: str,
    body: str,
    category: str,
    link: dict,
    source_key: str,
    template_code: str = "",
) -> tuple[InboxMessage, bool]:
    """Put one message into a person's inbox; the same source_key twice yields the first row."""
    try:
        # Insert first: a repeat is the rare case, so it pays the extra read, not every message.
        with transaction.atomic():
            message = InboxMessage.objects.create(
                audience=audience,
                recipient_id=recipient_id,
                title=title,
                body=body,
                category=category,
                link=link,
                source_key=source_key,
                template_code=template_code,
            )
        return message, True
    except IntegrityError:
        return InboxMessage.objects.get(source_key=source_key), False


def inbox_message_mark_read(*, message: InboxMessage) -> InboxMessage:
    """Mark one message read; reading it again keeps the first read time."""
    if message.read_at is None:
        message.read_at = timezone.now()
        InboxMessage.objects.filter(pk=message.pk, read_at__isnull=True).update(read_at=message.read_at)
    return message


def inbox_messages_put_many(rows: list[dict]) -> dict[str, int]:
    """Put many messages at once (fan-out); rows already there by source_key are left as they
    are. Returns each source_key's message id."""
    InboxMessage.objects.bulk_create([InboxMessage(**row) for row in rows], ignore_conflicts=True, batch_size=1000)
    keys = [row["source_key"] for row in rows]
    ids = {}
    for start in range(0, len(keys), 1000):
        ids.update(
            InboxMessage.objects.filter(source_key__in=keys[start : start + 1000]).values_list("source_key", "id")
        )
    return ids


def inbox_messages_mark_read(*, audience: str, recipient_id: str, category: str | None = None) -> int:
    """Mark all of a person's unread messages read (or one category's); returns how many."""
    qs = InboxMessage.objects.filter(
        audience=audience, recipient_id=recipient_id, read_at__isnull=True, deleted_at__isnull=True
    )
    if category:
        qs = qs.filter(category=category)
    return qs.update(read_at=timezone.now())


def inbox_message_delete(*, message: InboxMessage) -> None:
    """Hide a message from its owner's lists and counts. The row stays until retention purges it,
    so a retried delivery (same source_key) cannot bring it back."""
    InboxMessage.objects.filter(pk=message.pk, deleted_at__isnull=True).update(deleted_at=timezone.now())


def inbox_messages_purge(*, older_than_days: int, batch_size: int = 2000, max_batches: int | None = None) -> int:
    """Delete messages older than the retention, a small batch per statement so that no
    transaction holds many row locks or runs long; returns how many were deleted."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        ids = list(
            InboxMessage.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        deleted += InboxMessage.objects.filter(pk__in=ids).delete()[0]
        batches += 1
    return deleted
