"""The operations home page: today's volume and success per channel, the coverage cells that
need attention, deliveries stuck or in an unknown state, and the reminders of the next hour."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from channels.models import Channel, Delivery, DeliveryStatus

from .coverage import TEST_SENDS, coverage_matrix
from .models import UpcomingReminder

# Settled well: what counts as success in a rate, whichever of these statuses the engine has.
GOOD = [s for s in ("sent", "delivered", "read", "clicked", "deduplicated") if s in DeliveryStatus.values]
BAD = [s for s in ("failed", "undelivered") if s in DeliveryStatus.values]
# Sending longer than this is stuck: the provider timeout plus the lease is far shorter.
STUCK_AFTER = timedelta(minutes=5)


@dataclass
class ChannelDay:
    channel: str
    label: str
    good: int
    bad: int
    skipped: int
    waiting: int

    @property
    def total(self) -> int:
        return self.good + self.bad + self.skipped + self.waiting

    @property
    def success_rate(self) -> int | None:
        """Percent of the settled sends that succeeded (skips are not sends)."""
        settled = self.good + self.bad
        return round(self.good * 100 / settled) if settled else None


def channels_today(*, now: datetime | None = None) -> list[ChannelDay]:
    """Each channel's deliveries created since local midnight, test sends left out (on PostgreSQL
    read through the BRIN index of created_at, channels 0014: the day's block ranges only)."""
    midnight = timezone.localtime(now or timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = {
        row["channel"]: row
        for row in Delivery.objects.filter(created_at__gte=midnight)
        .exclude(TEST_SENDS)
        .values("channel")
        .annotate(
            good=Count("id", filter=Q(status__in=GOOD)),
            bad=Count("id", filter=Q(status__in=BAD)),
            skipped=Count("id", filter=Q(status="skipped")),
            waiting=Count("id", filter=~Q(status__in=[*GOOD, *BAD, "skipped", "cancelled"])),
        )
    }
    return [
        ChannelDay(c, label, *(counts.get(c, {}).get(k, 0) for k in ("good", "bad", "skipped", "waiting")))
        for c, label in Channel.choices
    ]


def deliveries_needing_attention(*, now: datetime | None = None, limit: int = 20):
    """Deliveries in an unknown state (the provider may or may not have sent them) and sends
    stuck for longer than STUCK_AFTER: each read through its partial index (delivery_unknown,
    delivery_lease), whatever the table holds."""
    now = now or timezone.now()
    match = Q(status="sending", updated_at__lt=now - STUCK_AFTER)
    if "unknown" in DeliveryStatus.values:
        match |= Q(status="unknown")
    rows = Delivery.objects.filter(match).select_related("recipient").order_by("updated_at")
    return rows.count(), list(rows[:limit])


def reminders_next_hour(*, now: datetime | None = None, limit: int = 20):
    now = now or timezone.now()
    rows = (
        UpcomingReminder.objects.filter(due_at__lt=now + timedelta(hours=1))
        .select_related("template", "recipient", "event__scenario")
        .order_by("due_at")
    )
    return rows.count(), list(rows[:limit])


def cells_needing_attention():
    """Coverage cells failing or whose every try was skipped, as (rule, channel label, cell)."""
    out = []
    for row in coverage_matrix():
        for channel, cell in zip(Channel.choices, row.cells, strict=True):
            if cell.state in ("failing", "skipped_only"):
                out.append((row.rule, channel[1], cell))
    return out
