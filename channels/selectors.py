from django.db.models import QuerySet

from .models import Delivery


def deliveries_for_messages(*, message_refs: list[int]) -> QuerySet[Delivery]:
    return Delivery.objects.filter(message_ref__in=message_refs).order_by("id")
