"""Receipts pulled instead of pushed, per account, from a beat task: JPush always (it reports
only on request); Aliyun (QuerySendDetails) and Tencent (PullSmsSendStatusByPhoneNumber) when the
account's options say `"pull_receipts": true`, for accounts whose console cannot reach us. Only
deliveries sent in the last 24 hours and not yet reported on are asked about."""

import logging
from datetime import timedelta

from django.utils import timezone

from ..addresses import deliveries_fill_addresses
from ..models import Channel, ChannelAccount, Delivery, DeliveryStatus, Provider
from ..providers import DeliveryResult, backend_for
from . import Receipt, jpush, receipts_apply

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
PER_RUN = 500


def receipts_pull_all() -> dict[str, int]:
    """One pass over every account that pulls; returns how many receipts each kind ended as."""
    totals: dict[str, int] = {}
    accounts = ChannelAccount.objects.filter(enabled=True).filter(
        provider__in=[Provider.JPUSH, Provider.ALIYUN, Provider.TENCENT]
    )
    for account in accounts:
        if account.provider != Provider.JPUSH and not (account.options or {}).get("pull_receipts"):
            continue
        try:
            counts = receipts_pull(account=account)
        except Exception:  # one account's trouble does not stop the others
            logger.exception("receipt pull for account %s failed", account.pk)
            continue
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def _waiting(account: ChannelAccount):
    return (
        Delivery.objects.filter(account=account, status=DeliveryStatus.SENT, finished_at__gte=timezone.now() - WINDOW)
        .select_related("account")
        .order_by("finished_at")[:PER_RUN]
    )


def receipts_pull(*, account: ChannelAccount) -> dict[str, int]:
    """Ask one account's provider about its deliveries still at `sent`, and apply what it says."""
    if account.provider == Provider.JPUSH:
        ids = [d.provider_message_id for d in _waiting(account) if d.provider_message_id]
        receipts = jpush.pull(account, ids) if ids else []
        return receipts_apply(provider=account.provider, account=account, receipts=receipts, channels=jpush.CHANNELS)
    backend = backend_for(Channel.SMS)
    receipts = []
    waiting = list(_waiting(account))
    deliveries_fill_addresses(waiting)  # the provider is asked by phone number
    for delivery in waiting:
        found = backend.query(delivery)
        receipt = _sms_receipt(account.provider, delivery, found)
        if receipt is not None:
            receipts.append(receipt)
    return receipts_apply(provider=account.provider, account=account, receipts=receipts, channels=(Channel.SMS,))


def _sms_receipt(provider: str, delivery: Delivery, found: DeliveryResult | None) -> Receipt | None:
    """A query's record as a receipt; None while the provider has no report yet."""
    if found is None or not isinstance(found.raw, dict):
        return None
    raw = found.raw
    if provider == Provider.ALIYUN:
        # SendStatus 1 waiting for the receipt, 2 failed, 3 delivered.
        state = int(raw.get("SendStatus") or 0)
        if state not in (2, 3):
            return None
        ok, code, text = state == 3, raw.get("ErrCode", ""), ""
    else:
        if raw.get("ReportStatus") not in ("SUCCESS", "FAIL"):
            return None
        ok, code, text = raw["ReportStatus"] == "SUCCESS", raw.get("Description", ""), ""
    return Receipt(
        status=DeliveryStatus.DELIVERED if ok else DeliveryStatus.UNDELIVERED,
        provider_message_id=delivery.provider_message_id,
        our_key=delivery.idempotency_key,
        code=str(code),
        text=text,
        raw={k: v for k, v in raw.items() if k not in ("PhoneNum", "PhoneNumber", "SubscriberNumber")},
    )
