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
    return dict(InboxMessage.objects.filter(source_key__in=keys).values_list("source_key", "id"))
