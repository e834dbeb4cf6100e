"""The coverage matrix: every scenario's rules × channels, each cell live from the delivery
records (the seed's progress sheet, kept by the system instead of by hand)."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q
from django.utils import timezone

from channels.models import AFTER_SENT, OPENED, REACHED, Channel, Delivery, DeliveryStatus
from channels.wording import reason_label

from .models import ChannelBinding, Rule
from .selectors import policy_reason_label

CHANNELS = [c for c, _ in Channel.choices]
# The console's test sends (scenarios/preview.py): they prove a binding works in the matrix, but
# are left out of the day's volumes and success rates.
TEST_SENDS = Q(idempotency_key__startswith="test:")


@dataclass
class Cell:
    state: str  # unbound | never_sent | skipped_only | working | failing
    sent_24h: int = 0
    failed_24h: int = 0
    skipped_24h: int = 0
    # Of the sent: reported delivered (or read/clicked), and read or clicked.
    delivered_24h: int = 0
    read_24h: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None
    error_code: str = ""
    error_message: str = ""
    skipped_total: int = 0
    skip_code: str = ""  # the latest skip's reason, when every try so far was skipped

    @property
    def skip_label(self) -> str:
        return reason_label(self.skip_code)

    # Skipped in the last 24 h per reason (opted_out, quiet_hours, capped, no_address…), as
    # (label, count) pairs for the admin.
    skipped_by_reason: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Row:
    rule: Rule
    cells: list[Cell] = field(default_factory=list)


@dataclass
class ChannelVolume:
    channel: str
    sent: int
    failed: int
    delivered: int = 0
    read: int = 0

    @property
    def label(self) -> str:
        return Channel(self.channel).label

    @property
    def total(self) -> int:
        return self.sent + self.failed

    @property
    def success_rate(self) -> float | None:
        return self.sent / self.total if self.total else None


def coverage_matrix(*, domain: str = "", now: datetime | None = None) -> list[Row]:
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    rules = list(
        Rule.objects.filter(scenario__enabled=True, enabled=True)
        .filter(**({"scenario__domain": domain} if domain else {}))
        .select_related("scenario", "template")
        .order_by("scenario__domain", "scenario__code", "audience", "id")
    )
    codes = {r.template.code for r in rules}
    bound = set(
        ChannelBinding.objects.filter(template__in=[r.template_id for r in rules], enabled=True).values_list(
            "template_id", "channel"
        )
    )
    deliveries = Delivery.objects.filter(template_code__in=codes)
    recent = {
        (d["template_code"], d["channel"]): d
        for d in deliveries.filter(finished_at__gte=since)
        .values("template_code", "channel")
        .annotate(
            sent=Count("id", filter=Q(status__in=AFTER_SENT)),
            delivered=Count("id", filter=Q(status__in=REACHED)),
            opened=Count("id", filter=Q(status__in=OPENED)),
            failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
            skipped=Count("id", filter=Q(status=DeliveryStatus.SKIPPED)),
        )
    }
    last = {}
    for status, among in ((DeliveryStatus.SENT, AFTER_SENT), (DeliveryStatus.FAILED, [DeliveryStatus.FAILED])):
        for d in deliveries.filter(status__in=among).values("template_code", "channel").annotate(at=Max("finished_at")):
            last.setdefault((d["template_code"], d["channel"]), {})[status] = d["at"]

    skips: dict[tuple[str, str], dict] = {}
    # The last 24 hours' skips per reason (opted_out, quiet_hours, capped, no_address…) too.
    skip_reasons: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for d in (
        deliveries.filter(status=DeliveryStatus.SKIPPED)
        .values("template_code", "channel", "last_error_code")
        .annotate(n=Count("id"), at=Max("finished_at"), recent=Count("id", filter=Q(finished_at__gte=since)))
        .order_by("at")
    ):
        seen = skips.setdefault((d["template_code"], d["channel"]), {"n": 0})
        seen["n"] += d["n"]
        seen["code"] = d["last_error_code"]  # ordered by time: the latest wins
        if d["recent"]:
            label = policy_reason_label(d["last_error_code"] or "skipped")
            skip_reasons.setdefault((d["template_code"], d["channel"]), []).append((label, d["recent"]))

    rows = []
    failing: dict[tuple[str, str], Cell] = {}
    for rule in rules:
        row = Row(rule)
        for channel in CHANNELS:
            key = (rule.template.code, channel)
            counts = recent.get(key, {})
            seen = last.get(key, {})
            cell = Cell(
                state="unbound",
                sent_24h=counts.get("sent", 0),
                failed_24h=counts.get("failed", 0),
                skipped_24h=counts.get("skipped", 0),
                delivered_24h=counts.get("delivered", 0),
                read_24h=counts.get("opened", 0),
                last_success=seen.get(DeliveryStatus.SENT),
                last_failure=seen.get(DeliveryStatus.FAILED),
                skipped_by_reason=skip_reasons.get(key, []),
            )
            if (rule.template_id, channel) in bound:
                if cell.last_failure and (cell.last_success is None or cell.last_failure > cell.last_success):
                    cell.state = "failing"
                    failing[key] = cell
                elif cell.last_success:
                    cell.state = "working"
                elif key in skips:
                    # Tried, but never reached anyone: e.g. 32 deliveries all skipped for no_address.
                    cell.state = "skipped_only"
                    cell.skipped_total, cell.skip_code = skips[key]["n"], skips[key]["code"]
                else:
                    cell.state = "never_sent"
            row.cells.append(cell)
        rows.append(row)
    _add_last_errors(deliveries, failing)
    return rows


def _add_last_errors(deliveries, failing: dict[tuple[str, str], Cell]) -> None:
    """Each failing cell's last error, in one query: the failures that ended at the cell's last
    failure time (one of them, should two end in the same microsecond)."""
    if not failing:
        return
    match = Q()
    for (code, channel), cell in failing.items():
        match |= Q(template_code=code, channel=channel, finished_at=cell.last_failure)
    for d in deliveries.filter(match, status=DeliveryStatus.FAILED).values(
        "template_code", "channel", "last_error_code", "last_error_message"
    ):
        cell = failing[(d["template_code"], d["channel"])]
        cell.error_code, cell.error_message = d["last_error_code"], d["last_error_message"]


def channel_volumes(*, now: datetime | None = None) -> list[ChannelVolume]:
    """Each channel's last 24 hours, whatever the template: volume and success rate."""
    since = (now or timezone.now()) - timedelta(hours=24)
    counts = {
        d["channel"]: d
        for d in Delivery.objects.filter(finished_at__gte=since)
        .exclude(TEST_SENDS)
        .values("channel")
        .annotate(
            sent=Count("id", filter=Q(status__in=AFTER_SENT)),
            delivered=Count("id", filter=Q(status__in=REACHED)),
            opened=Count("id", filter=Q(status__in=OPENED)),
            failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
        )
    }
    return [
        ChannelVolume(
            c,
            counts.get(c, {}).get("sent", 0),
            counts.get(c, {}).get("failed", 0),
            counts.get(c, {}).get("delivered", 0),
            counts.get(c, {}).get("opened", 0),
        )
        for c in CHANNELS
    ]
