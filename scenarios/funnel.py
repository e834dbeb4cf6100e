"""A scenario's funnel: planned messages → deliveries sent → delivered → read or clicked."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from channels.models import AFTER_SENT, OPENED, REACHED, Delivery, DeliveryStatus

from .models import Message


@dataclass
class Funnel:
    planned: int
    sent: int
    delivered: int
    opened: int
    clicked: int


def scenario_funnel(*, scenario_id: int, since: datetime) -> Funnel:
    """Messages planned for the scenario's events since a time, and how far their deliveries got."""
    messages = Message.objects.filter(event__scenario_id=scenario_id, created_at__gte=since)
    counts = Delivery.objects.filter(message_ref__in=messages.values("pk")).aggregate(
        sent=Count("id", filter=Q(status__in=AFTER_SENT)),
        delivered=Count("id", filter=Q(status__in=REACHED)),
        opened=Count("id", filter=Q(status__in=OPENED)),
        clicked=Count("id", filter=Q(status=DeliveryStatus.CLICKED)),
    )
    return Funnel(planned=messages.count(), **counts)


def scenario_funnels(*, scenario_id: int, now: datetime | None = None) -> dict[str, Funnel]:
    """The last 24 hours and the last 7 days."""
    now = now or timezone.now()
    return {
        "24h": scenario_funnel(scenario_id=scenario_id, since=now - timedelta(hours=24)),
        "7d": scenario_funnel(scenario_id=scenario_id, since=now - timedelta(days=7)),
    }
