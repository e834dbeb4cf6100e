"""Which account sends a delivery, and moving to the secondary when a provider fails on its side.

1. At creation (`account_for`): the binding's account if it names one, else a weighted pick
   among the channel's enabled accounts with a weight, else the channel's default account. An
   account whose circuit is open hands its traffic to its secondary, except one probe at a time.
2. After each answer (`route_on_result`, one call in channels/sending.apply_result): a
   provider-side failure (balance, suspended signature or template, system error, an HTTP 5xx)
   counts against the account's circuit and, if the account has an enabled secondary, sends the
   delivery there at once, once. Failures about the person (an invalid number, per-number limits)
   never fail over: another provider would defeat the limit or resend to a bad number.
3. An unknown outcome (a timeout) never fails over here: the first provider may have sent it.
   Reconciliation asks it (channels/reconcile.py); only its "no record" resends, and that resend
   goes through the secondary when there is one (`fail_over`, one call there).
4. The circuit opens after CIRCUIT_FAILURES provider-side failures in a row and closes when a probe
   (one send let through after CIRCUIT_COOLDOWN_SECONDS) succeeds. It lives in the shared cache.

Each delivery keeps the reason in `route_reason`; each attempt's error code says what failed.
"""

import logging
import random

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from .models import AttemptOutcome, ChannelAccount, Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

# Aliyun SendSms codes that are the provider's or the account's trouble, in Aliyun's words:
# "账户余额不足", "业务停机", "账户异常", "签名不合法/未审核", "模板不合法/未审核", "系统错误".
ALIYUN_PROVIDER_SIDE = {
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.ACCOUNT_ABNORMAL",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_SIGN_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isp.SYSTEM_ERROR",
    "isp.RAM_PERMISSION_DENY",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId.NotFound",
}
# Tencent Cloud: "套餐包余量不足", unapproved signature or template, their internal errors, auth.
TENCENT_PROVIDER_SIDE = {
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.MissingSignature",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
}
TENCENT_PROVIDER_SIDE_PREFIXES = ("InternalError", "AuthFailure.", "ResourceUnavailable.")
# Our HTTP client's codes for a provider that answered badly or not at all before the request left.
TRANSPORT_PROVIDER_SIDE = ("http_5", "connection_error", "connect_timeout", "bad_response")

# Never failed over, whatever else a table says: limits on one number, a bad number.
PERSON_SIDE = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.DAY_LIMIT_CONTROL",
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "InvalidParameterValue.IncorrectPhoneNumber",
}


def provider_side(code: str) -> bool:
    """A failure of the provider or of our account there, not of the person or the message."""
    if not code or code in PERSON_SIDE:
        return False
    return (
        code in ALIYUN_PROVIDER_SIDE
        or code in TENCENT_PROVIDER_SIDE
        or code.startswith(TENCENT_PROVIDER_SIDE_PREFIXES)
        or code.startswith(TRANSPORT_PROVIDER_SIDE)
    )


def _failures_key(account_id: int) -> str:
    return f"nc:circuit:{account_id}:failures"


def _open_key(account_id: int) -> str:
    return f"nc:circuit:{account_id}:open"


def _probe_key(account_id: int) -> str:
    return f"nc:circuit:{account_id}:probe"


def circuit_open(account_id: int) -> bool:
    return cache.get(_open_key(account_id)) is not None


def _let_probe_through(account_id: int) -> bool:
    """While open, one send per cooldown goes to the account itself, to see whether it is back."""
    opened_at = cache.get(_open_key(account_id))
    if opened_at is None:
        return True
    if timezone.now().timestamp() - opened_at < settings.CIRCUIT_COOLDOWN_SECONDS:
        return False
    return cache.add(_probe_key(account_id), 1, timeout=settings.CIRCUIT_COOLDOWN_SECONDS)


def accounts_by_channel(accounts) -> dict[str, list[ChannelAccount]]:
    """The enabled accounts by channel, as new deliveries are routed over them (`accounts`: every
    account, enabled or not, read once); a disabled default's enabled secondary on the same
    channel is marked `stands_in_for` the default, and account_for takes it in its place."""
    everything = list(accounts)
    enabled = {a.pk: a for a in everything if a.enabled}
    by_channel: dict[str, list[ChannelAccount]] = {}
    for account in enabled.values():
        by_channel.setdefault(account.channel, []).append(account)
    for account in everything:
        stand_in = enabled.get(account.secondary_id) if account.is_default and not account.enabled else None
        if stand_in is not None and stand_in.channel == account.channel:
            stand_in.stands_in_for = account.name
    return by_channel


def account_for(
    *, channel: str, requested: ChannelAccount | None, accounts: list[ChannelAccount]
) -> tuple[ChannelAccount | None, str]:
    """The account a new delivery goes through, and why. `accounts`: the channel's enabled ones."""
    if requested is not None:
        account, reason = requested, "binding"
    else:
        weighted = [a for a in accounts if a.weight > 0]
        if weighted:
            # Traffic shares, not secrets: a plain PRNG is the right tool.
            account = random.choices(weighted, weights=[a.weight for a in weighted])[0]  # noqa: S311
            reason = "weighted"
        else:
            account = next((a for a in accounts if a.is_default), None)
            reason = "default"
            if account is None:
                # The default account disabled (a leaked key, a suspended account): its enabled
                # secondary takes the channel's new deliveries (marked by accounts_by_channel).
                account = next((a for a in accounts if getattr(a, "stands_in_for", "")), None)
                if account is not None:
                    reason = f"default_disabled: {account.stands_in_for}"
    if account is not None and account.secondary_id and not _let_probe_through(account.pk):
        secondary = next((a for a in accounts if a.pk == account.secondary_id), None)
        if secondary is not None:
            return secondary, f"circuit_open: {account.name}"
    return account, reason


def reroute_disabled(rows: list[Delivery]) -> None:
    """Claimed deliveries whose account was disabled after they were routed (a leaked key, a
    suspended account) go through the channel's account of now: the disabled one's enabled
    secondary, else account_for's choice; with none, no account, and the send fails `no_account`,
    recorded. Nothing is read when no row's account is disabled (the rows carry their accounts)."""
    off = [d for d in rows if d.account is not None and not d.account.enabled]
    if not off:
        return
    by_channel = accounts_by_channel(ChannelAccount.objects.filter(channel__in={d.channel for d in off}))
    for channel in {d.channel for d in off}:
        enabled = by_channel.get(channel, [])
        for delivery in (d for d in off if d.channel == channel):
            account = next((a for a in enabled if a.pk == delivery.account.secondary_id), None)
            if account is None:
                account, _ = account_for(channel=channel, requested=None, accounts=enabled)
            why = f"account_disabled: {delivery.account.name}"[:100]
            logger.warning("delivery %s: %s is disabled; through %s", delivery.pk, delivery.account, account)
            Delivery.objects.filter(pk=delivery.pk).update(account=account, route_reason=why)
            delivery.account, delivery.route_reason = account, why


def route_on_result(delivery: Delivery, result, *, now) -> None:
    """After an answer: keep the account's circuit, and on a provider-side failure move the
    delivery (not saved, like apply_result) to the account's secondary, queued at once."""
    account = delivery.account
    # The circuit is read only for accounts with a secondary (account_for) and failover needs one:
    # an account without one costs no shared-cache call per send.
    if account is None or not account.secondary_id or result.outcome == AttemptOutcome.UNKNOWN:
        return
    if result.outcome == AttemptOutcome.SENT:
        if cache.get(_failures_key(account.pk)):
            cache.delete_many([_failures_key(account.pk), _open_key(account.pk), _probe_key(account.pk)])
        return
    if result.outcome not in (AttemptOutcome.PERMANENT, AttemptOutcome.TRANSIENT) or not provider_side(result.code):
        return
    _count_failure(account)
    if delivery.route_reason.startswith("failover") or delivery.status not in (
        DeliveryStatus.FAILED,
        DeliveryStatus.QUEUED,
    ):
        return  # once per delivery: two providers down is for people to look at
    fail_over(delivery, why=f"{account.name} {result.code}", now=now)


def fail_over(delivery: Delivery, *, why: str, now) -> bool:
    """Move a delivery that did not go out to its account's enabled secondary, queued at once
    (not saved but for the account and reason, like apply_result). False when there is none."""
    account = delivery.account
    if account is None or not account.secondary_id:
        return False
    secondary = ChannelAccount.objects.filter(pk=account.secondary_id, enabled=True).first()
    if secondary is None or secondary.channel != delivery.channel:
        return False
    logger.warning("delivery %s: failing over from %s to %s: %s", delivery.pk, account, secondary, why)
    delivery.account = secondary
    delivery.route_reason = f"failover: {why}"[:100]
    delivery.status, delivery.not_before, delivery.enqueued_at = DeliveryStatus.QUEUED, now, None
    # The callers save a fixed list of fields; the account and reason go now, in their transaction.
    Delivery.objects.filter(pk=delivery.pk).update(account=secondary, route_reason=delivery.route_reason)
    return True


def _count_failure(account: ChannelAccount) -> None:
    key = _failures_key(account.pk)
    cache.add(key, 0, timeout=3600)
    try:
        failures = cache.incr(key)
    except ValueError:
        failures = 1
    if failures >= settings.CIRCUIT_FAILURES:
        # Re-opened by a failed probe too: the cooldown starts again.
        cache.set(_open_key(account.pk), timezone.now().timestamp(), timeout=3600)
        cache.delete(_probe_key(account.pk))
