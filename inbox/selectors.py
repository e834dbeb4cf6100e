from django.db.models import Count, QuerySet

from .models import Category, InboxMessage


def inbox_message_list(
    *,
    audience: str,
    recipient_id: str,
    category: str | None = None,
    unread: bool | None = None,
    before_id: int | None = None,
) -> QuerySet[InboxMessage]:
    """A person's visible messages, newest first; `before_id` is the keyset cursor (no OFFSET)."""
    qs = InboxMessage.objects.filter(audience=audience, recipient_id=recipient_id, deleted_at__isnull=True)
    if category:
        qs = qs.filter(category=category)
    if unread is True:
        qs = qs.filter(read_at__isnull=True)
    elif unread is False:
        qs = qs.filter(read_at__isnull=False)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return qs.order_by("-id")


def inbox_unread_counts(*, audience: str, recipient_id: str) -> dict[str, int]:
    """Unread visible messages per category (every category present, zero or not)."""
    rows = (
        InboxMessage.objects.filter(
            audience=audience, recipient_id=recipient_id, deleted_at__isnull=True, read_at__isnull=True
        )
        .values("category")
        .annotate(n=Count("*"))
        .order_by()
    )
    counts = dict.fromkeys(Category.values, 0)
    for row in rows:
        counts[row["category"]] = row["n"]
    return counts


def inbox_message_get(*, audience: str, recipient_id: str, message_id: int) -> InboxMessage | None:
    """One of a person's own visible messages, or None (never someone else's)."""
    return InboxMessage.objects.filter(
        pk=message_id, audience=audience, recipient_id=recipient_id, deleted_at__isnull=True
    ).first()
