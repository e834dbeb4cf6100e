"""Provider receipts in: one module per provider, like channels/providers/.

Each module has `authenticate(request, account)` (raises `Refused` for a forged or replayed call,
the way its provider documents), `parse(request, account) -> (receipts, answer)` and, where the
provider offers one, a pull. `receipts_apply` matches each receipt to a delivery (by our key first,
then by the provider's message id), keeps it whatever it names, and moves the delivery forward
through channels/timeline.py.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..addresses import deliveries_fill_addresses
from ..masking import mask_addresses_in_text
from ..models import (
    AttemptKind,
    ChangeSource,
    ChannelAccount,
    Delivery,
    DeliveryAttempt,
    ProviderReceipt,
    ReceiptOutcome,
)
from ..providers.sms import tencent_phone
from ..timeline import Report, deliveries_progress

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
    # The number it reports on (E.164), in memory only: our key names a batch of numbers
    # (channels/providers/sms.py, send_batch_steps), and the number picks the member.
    address: str = ""


PROGRESS_OUTCOME = {
    "applied": ReceiptOutcome.APPLIED,
    "duplicate": ReceiptOutcome.DUPLICATE,
    "late": ReceiptOutcome.LATE,
    "early": ReceiptOutcome.EARLY,
    "gone": ReceiptOutcome.IGNORED,
}


def _match(receipts: list[Receipt], channels: tuple[str, ...]) -> list[int | None]:
    """Each receipt's delivery: by our key (SMS OutId / SessionContext is the delivery's
    idempotency key, or a batch's key with the receipt's number) first, then by the provider's
    message id among this provider's channels."""
    keys = {r.our_key for r in receipts if r.our_key}
    ids = {r.provider_message_id for r in receipts if r.provider_message_id}
    by_key: dict = (
        dict(Delivery.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", "pk")) if keys else {}
    )
    by_key |= _batch_members({r.our_key for r in receipts if r.address and r.our_key not in by_key}, channels)
    by_id: dict[str, int] = {}
    if ids:
        for pk, message_id in (
            Delivery.objects.filter(provider_message_id__in=ids, channel__in=channels)
            .order_by("pk")
            .values_list("pk", "provider_message_id")
        ):
            by_id[message_id] = pk  # the newest wins, should a provider reuse an id
    return [
        by_key.get(r.our_key) or by_key.get((r.our_key, r.address)) or by_id.get(r.provider_message_id)
        for r in receipts
    ]


def _batch_members(keys: set[str], channels: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """(batch key, number) → delivery, for the members of batches sent with these keys (a number
    is in a batch once). Their numbers come from the directory, in memory."""
    if not keys:
        return {}
    attempts = list(
        DeliveryAttempt.objects.filter(provider_key__in=keys, kind=AttemptKind.SEND, delivery__channel__in=channels)
        .select_related("delivery__recipient")
        .order_by("pk")
    )
    deliveries_fill_addresses([a.delivery for a in attempts])
    return {(a.provider_key, tencent_phone(a.delivery.address)): a.delivery_id for a in attempts if a.delivery.address}


def _progress(receipts: list[Receipt], delivery_ids: list[int | None]) -> list[str]:
    """Matched receipts move their deliveries (one transaction); unmatched ones are kept as such."""
    matched = [(r, pk) for r, pk in zip(receipts, delivery_ids, strict=True) if pk is not None]
    outcomes = iter(
        deliveries_progress(
            reports=[Report(pk, r.status, r.reported_at, ChangeSource.RECEIPT, r.code, r.text) for r, pk in matched]
        )
        if matched
        else []
    )
    return [ReceiptOutcome.UNMATCHED if pk is None else PROGRESS_OUTCOME[next(outcomes)] for pk in delivery_ids]


def receipt_apply(*, receipt: ProviderReceipt) -> str:
    """Apply one stored receipt to its delivery again (one that came early)."""
    r = Receipt(receipt.status, code=receipt.code, text=receipt.text, reported_at=receipt.reported_at)
    (receipt.outcome,) = _progress([r], [receipt.delivery_id])
    ProviderReceipt.objects.filter(pk=receipt.pk).update(outcome=receipt.outcome)
    return receipt.outcome


def receipts_apply(
    *, provider: str, account: ChannelAccount | None, receipts: list[Receipt], channels: tuple[str, ...]
) -> dict[str, int]:
    """Keep every receipt and move its delivery forward, a provider's batch in one transaction;
    returns how many ended each way."""
    now = timezone.now()
    with transaction.atomic():
        delivery_ids = _match(receipts, channels)
        outcomes = _progress(receipts, delivery_ids)
        ProviderReceipt.objects.bulk_create(
            [
                ProviderReceipt(
                    provider=provider,
                    account=account,
                    delivery_id=pk,
                    provider_message_id=r.provider_message_id[:128],
                    our_key=r.our_key[:128],
                    status=r.status,
                    code=r.code[:64],
                    text=r.text[:500],
                    reported_at=r.reported_at,
                    received_at=now,
                    outcome=outcome,
                    raw=r.raw,
                )
                for r, pk, outcome in zip(receipts, delivery_ids, outcomes, strict=True)
            ],
            batch_size=1000,
        )
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def receipts_retry_early(*, limit: int = 500) -> int:
    """Receipts that came while their delivery was still being sent: apply them now."""
    done = 0
    for receipt in ProviderReceipt.objects.filter(outcome=ReceiptOutcome.EARLY).order_by("received_at")[:limit]:
        done += receipt_apply(receipt=receipt) != ReceiptOutcome.EARLY
    return done


def receipt_refused(*, provider: str, account: ChannelAccount | None, reason: str, request) -> None:
    """Record a refused call (forged or replayed), so operations see who knocks; its body with
    the phones and openids in it masked (a report refused as too old names a real person)."""
    ProviderReceipt.objects.create(
        provider=provider,
        account=account,
        outcome=ReceiptOutcome.REFUSED,
        text=reason[:500],
        raw={
            "path": request.path,
            "remote_addr": request.META.get("REMOTE_ADDR", ""),
            "body": mask_addresses_in_text(request.body[:2000].decode(errors="replace")),
        },
    )


def too_old(at: datetime | None, now: datetime | None = None) -> bool:
    return at is not None and ((now or timezone.now()) - at).total_seconds() > MAX_REPORT_AGE_SECONDS
