"""The coverage matrix: every scenario's rules × channels, each cell live from the delivery
records (the seed's progress sheet, kept by the system instead of by hand)."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from channels.models import AFTER_SENT, OPENED, REACHED, Channel, Delivery, DeliveryStatus
from channels.wording import reason_label
from inbox.admin_lists import distinct_values

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
    skipped_more: bool = False  # more skips than counted (SKIPS_COUNTED): "more than skipped_total"
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
    """Every enabled rule's row, a cell per channel. Read through the deliveries' coverage index
    (template code, channel, status, finished at) one key at a time, never the whole table: the
    last 24 hours' counts, each bound cell's latest success and failure, and for a cell never sent
    nor failed, its skips (counted up to SKIPS_COUNTED)."""
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
    keys = {(r.template.code, channel) for r in rules for channel in CHANNELS if (r.template_id, channel) in bound}
    recent, skip_reasons = _last_day(codes, since)
    last = _latest([r.template_id for r in rules])

    rows = []
    # Rules sharing a template share its cells' deliveries: every such cell gets the error.
    failing: dict[tuple[str, str], list[Cell]] = {}
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
            if key in keys:
                if cell.last_failure and (cell.last_success is None or cell.last_failure > cell.last_success):
                    cell.state = "failing"
                    failing.setdefault(key, []).append(cell)
                elif cell.last_success:
                    cell.state = "working"
                elif _skips(cell, key, seen.get(DeliveryStatus.SKIPPED)):
                    # Tried, but never reached anyone: e.g. 32 deliveries all skipped for no_address.
                    cell.state = "skipped_only"
                else:
                    cell.state = "never_sent"
            row.cells.append(cell)
        rows.append(row)
    _add_last_errors(Delivery.objects.all(), failing)
    return rows


# Channels where a send is the delivery: an inbox message written is in the person's inbox (no
# receipt comes); its sends count as delivered in the matrix and the volumes.
DELIVERED_ON_SEND = {Channel.INBOX}


# A cell whose every try was skipped shows how many: counted up to here, "more than" beyond.
SKIPS_COUNTED = 10_000
# The statuses a cell's counts and dates read (one descent of the coverage index each).
COUNTED = (*AFTER_SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


def _last_day(codes: set[str], since: datetime) -> tuple[dict, dict]:
    """The last 24 hours by (template code, channel): sent, delivered, opened, failed and skipped
    counts, and the skips per reason as (label, count) pairs. One statement whose every key the
    coverage index leads with (each code × channel × status a range of finished times). Split in
    two (the counts index only, the skips' reasons apart) it was slower at 10M deliveries:
    home page 403 → 547 ms (bench/console.py)."""
    recent: dict[tuple[str, str], dict] = {}
    reasons: dict[tuple[str, str], dict[str, int]] = {}
    rows = (
        Delivery.objects.filter(
            template_code__in=sorted(codes), channel__in=CHANNELS, status__in=COUNTED, finished_at__gte=since
        )
        .values("template_code", "channel", "status", "last_error_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    for d in rows:
        key, status, n = (d["template_code"], d["channel"]), d["status"], d["n"]
        counts = recent.setdefault(key, {})
        reached = (*REACHED, DeliveryStatus.SENT) if key[1] in DELIVERED_ON_SEND else REACHED
        for name, among in (
            ("sent", AFTER_SENT),
            ("delivered", reached),
            ("opened", OPENED),
            ("failed", (DeliveryStatus.FAILED,)),
            ("skipped", (DeliveryStatus.SKIPPED,)),
        ):
            if status in among:
                counts[name] = counts.get(name, 0) + n
        if status == DeliveryStatus.SKIPPED:
            code = d["last_error_code"] or "skipped"
            reasons.setdefault(key, {})[code] = reasons.get(key, {}).get(code, 0) + n
    skip_reasons = {
        key: [(policy_reason_label(code), n) for code, n in sorted(by_code.items())] for key, by_code in reasons.items()
    }
    return recent, skip_reasons


def _latest(template_ids: list[int]) -> dict[tuple[str, str], dict]:
    """Each enabled binding's latest success (any status after sent), latest failure and latest
    skip's reason (None: never skipped), ever: per binding and status the top of the coverage
    index, correlated probes in one statement."""

    def top(status: str, column: str) -> Subquery:
        return Subquery(
            Delivery.objects.filter(
                template_code=OuterRef("template__code"),
                channel=OuterRef("channel"),
                status=status,
                finished_at__isnull=False,
            )
            .order_by("-finished_at")
            .values(column)[:1]
        )

    probes = {f"at_{status}": top(status, "finished_at") for status in (*AFTER_SENT, DeliveryStatus.FAILED)}
    probes["skip_code"] = top(DeliveryStatus.SKIPPED, "last_error_code")
    latest: dict[tuple[str, str], dict[str, datetime]] = {}
    bindings = ChannelBinding.objects.filter(template__in=template_ids, enabled=True)
    for row in bindings.values("template__code", "channel").annotate(**probes).order_by():
        successes = [row[f"at_{s}"] for s in AFTER_SENT if row[f"at_{s}"] is not None]
        latest[(row["template__code"], row["channel"])] = {
            DeliveryStatus.SENT: max(successes, default=None),
            DeliveryStatus.FAILED: row["at_failed"],
            DeliveryStatus.SKIPPED: row["skip_code"],
        }
    return latest


def _skips(cell: Cell, key: tuple[str, str], skip_code: str | None) -> bool:
    """A bound cell never sent nor failed: if it was ever skipped (`skip_code`, its latest skip's
    reason, from _latest), its skips counted up to SKIPS_COUNTED. True if there are any."""
    if skip_code is None:
        return False
    code, channel = key
    skipped = Delivery.objects.filter(template_code=code, channel=channel, status=DeliveryStatus.SKIPPED)
    count = skipped[: SKIPS_COUNTED + 1].count()
    cell.skipped_total, cell.skipped_more = min(count, SKIPS_COUNTED), count > SKIPS_COUNTED
    cell.skip_code = skip_code
    return True


def _add_last_errors(deliveries, failing: dict[tuple[str, str], list[Cell]]) -> None:
    """Each failing cell's last error, in one query: the failures that ended at the cell's last
    failure time (one of them, should two end in the same microsecond)."""
    if not failing:
        return
    match = Q()
    for (code, channel), cells in failing.items():
        match |= Q(template_code=code, channel=channel, finished_at=cells[0].last_failure)
    for d in deliveries.filter(match, status=DeliveryStatus.FAILED).values(
        "template_code", "channel", "last_error_code", "last_error_message"
    ):
        for cell in failing[(d["template_code"], d["channel"])]:
            cell.error_code, cell.error_message = d["last_error_code"], d["last_error_message"]


def channel_volumes(*, now: datetime | None = None) -> list[ChannelVolume]:
    """Each channel's last 24 hours, whatever the template: volume and success rate."""
    since = (now or timezone.now()) - timedelta(hours=24)
    # Every template code deliveries were made for (the coverage index's own, read value by
    # value), so that the statement reads each code × channel × status's last day through it.
    codes = distinct_values(Delivery, "template_code")
    counts = {
        d["channel"]: d
        for d in Delivery.objects.filter(
            template_code__in=codes, channel__in=CHANNELS, status__in=COUNTED, finished_at__gte=since
        )
        .exclude(TEST_SENDS)
        .values("channel")
        .annotate(
            sent=Count("id", filter=Q(status__in=AFTER_SENT)),
            delivered=Count(
                "id", filter=Q(status__in=REACHED) | Q(status=DeliveryStatus.SENT, channel__in=DELIVERED_ON_SEND)
            ),
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
