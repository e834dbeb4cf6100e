from django.db.models import QuerySet

from .models import Delivery, Recipient


def recipients_by_ids(*, audience: str, external_ids: list[str]) -> dict[str, Recipient]:
    return {r.external_id: r for r in Recipient.objects.filter(audience=audience, external_id__in=external_ids)}


def deliveries_for_messages(*, message_refs: list[int]) -> QuerySet[Delivery]:
    return Delivery.objects.filter(message_ref__in=message_refs).order_by("id")
