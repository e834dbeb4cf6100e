"""Provider receipts in: one module per provider, like channels/providers/.

Each module has `authenticate(request, account)` (raises `Refused` for a forged or replayed call,
the way its provider documents), `parse(request, account) -> (receipts, answer)` and, where the
provider offers one, a pull. `receipts_apply` matches each receipt to a delivery (by our key first,
then by the provider's message id), keeps it whatever it names, and moves the delivery forward
through channels/timeline.py.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from ..models import ChangeSource, ChannelAccount, Delivery, ProviderReceipt, ReceiptOutcome
from ..timeline import delivery_progress

# How old a pushed report may be before it counts as a replay (providers push within minutes and
# retry for hours, not days).
MAX_REPORT_AGE_SECONDS = 3 * 86400


class Refused(Exception):
    """A callback that is not from the provider (bad signature or token) or replays an old one."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Receipt:
    """One report about one message, in our words: delivered or undelivered, with the provider's."""

    status: str  # DeliveryStatus.DELIVERED or UNDELIVERED
    provider_message_id: str = ""
    our_key: str = ""
    code: str = ""
    text: str = ""
    reported_at: datetime | None = None
    raw: dict = field(default_factory=dict)


PROGRESS_OUTCOME = {
    "applied": ReceiptOutcome.APPLIED,
    "duplicate": ReceiptOutcome.DUPLICATE,
    "late": ReceiptOutcome.LATE,
    "early": ReceiptOutcome.EARLY,
    "gone": ReceiptOutcome.IGNORED,
}


def _match(provider_message_id: str, our_key: str, channels: tuple[str, ...]) -> int | None:
    """Our key (SMS OutId / SessionContext is the delivery's idempotency key) first, then the
    provider's message id among the channels this provider serves."""
    if not provider_message_id and not our_key:
        return None
    match = Q(idempotency_key=our_key) if our_key else Q(pk__in=[])
    if provider_message_id:
        match |= Q(provider_message_id=provider_message_id, channel__in=channels)
    return Delivery.objects.filter(match).order_by("-pk").values_list("pk", flat=True).first()


def receipt_apply(*, receipt: ProviderReceipt) -> str:
    """Apply one stored receipt to its delivery (again, for one that came early)."""
    progress = delivery_progress(
        delivery_id=receipt.delivery_id,
        status=receipt.status,
        at=receipt.reported_at,
        source=ChangeSource.RECEIPT,
        code=receipt.code,
        detail=receipt.text,
    )
    receipt.outcome = PROGRESS_OUTCOME[progress]
    ProviderReceipt.objects.filter(pk=receipt.pk).update(outcome=receipt.outcome)
    return receipt.outcome


def receipts_apply(
    *, provider: str, account: ChannelAccount | None, receipts: list[Receipt], channels: tuple[str, ...]
) -> dict[str, int]:
    """Keep every receipt and move its delivery forward; returns how many ended each way."""
    counts: dict[str, int] = {}
    now = timezone.now()
    for r in receipts:
        delivery_id = _match(r.provider_message_id, r.our_key, channels)
        stored = ProviderReceipt.objects.create(
            provider=provider,
            account=account,
            delivery_id=delivery_id,
            provider_message_id=r.provider_message_id[:128],
            our_key=r.our_key[:128],
            status=r.status,
            code=r.code[:64],
            text=r.text[:500],
            reported_at=r.reported_at,
            received_at=now,
            outcome=ReceiptOutcome.UNMATCHED,
            raw=r.raw,
        )
        outcome = ReceiptOutcome.UNMATCHED if delivery_id is None else receipt_apply(receipt=stored)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def receipts_retry_early(*, limit: int = 500) -> int:
    """Receipts that came while their delivery was still being sent: apply them now."""
    done = 0
    for receipt in ProviderReceipt.objects.filter(outcome=ReceiptOutcome.EARLY).order_by("received_at")[:limit]:
        done += receipt_apply(receipt=receipt) != ReceiptOutcome.EARLY
    return done


def receipt_refused(*, provider: str, account: ChannelAccount | None, reason: str, request) -> None:
    """Record a refused call (forged or replayed), so operations see who knocks."""
    ProviderReceipt.objects.create(
        provider=provider,
        account=account,
        outcome=ReceiptOutcome.REFUSED,
        text=reason[:500],
        raw={
            "path": request.path,
            "remote_addr": request.META.get("REMOTE_ADDR", ""),
            "body": request.body[:2000].decode(errors="replace"),
        },
    )


def too_old(at: datetime | None, now: datetime | None = None) -> bool:
    return at is not None and ((now or timezone.now()) - at).total_seconds() > MAX_REPORT_AGE_SECONDS
