"""Unknown outcomes, settled per channel: a provider may or may not have acted on a request whose
answer never came (a timeout, a connection lost, a worker killed mid-call).

- WeChat OA template (`client_msg_id`), JPush (`cid`), WeCom app (duplicate check): resend with
  the same key while the provider's de-duplication window is open; after it, `unknown` for good.
- SMS: ask the provider (Aliyun `QuerySendDetails` by `OutId`, Tencent
  `PullSmsSendStatusByPhoneNumber` by `SessionContext`) and settle from its record; no record:
  resend (with the same key).
- Mini-program subscribe, WeCom group robot: no key, no query: `unknown` for good, resent only
  where the binding's options say `at_least_once`.
- Station inbox: never unknown (written in our own transaction).

An unknown delivery waits RECONCILE_AFTER_SECONDS after its attempt started, so a request still in
flight at the provider has landed before we ask or resend. Each decision is an attempt row of kind
`reconcile` on the delivery's timeline. A final `unknown` is listed and counted in the admin, and
operations can retry it by hand.
"""

import logging
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .addresses import deliveries_fill_addresses
from .models import AttemptKind, AttemptOutcome, ChangeSource, Delivery, DeliveryAttempt, DeliveryStatus
from .providers import DeliveryResult, Reconcile, backend_for
from .routing import fail_over
from .sending import _next_number, apply_result, backoff_seconds, lease
from .services import enqueue
from .timeline import status_changes_record

logger = logging.getLogger(__name__)

# A provider's de-duplication window is not trusted to its last minute.
WINDOW_MARGIN = timedelta(minutes=1)
# Failed queries (the provider could not say) before the outcome is settled as unknown.
MAX_QUERIES = 8


def deliveries_reconcile(*, delivery_ids: list[int]) -> None:
    for pk in delivery_ids:
        delivery_reconcile(delivery_id=pk)


def delivery_reconcile(*, delivery_id: int) -> str | None:
    """Settle one unknown outcome if it is due and no one else holds it; returns the decision."""
    now = timezone.now()
    claim = secrets.token_hex(8)
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("recipient", "account")
            .filter(pk=delivery_id, status=DeliveryStatus.UNKNOWN, finished_at__isnull=True, not_before__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .first()
        )
        if delivery is None:
            return None
        Delivery.objects.filter(pk=delivery.pk).update(claim=claim, lease_until=now + lease())
    deliveries_fill_addresses([delivery])
    decision, result = _decide(delivery, now)
    with transaction.atomic():
        if not Delivery.objects.select_for_update().filter(pk=delivery.pk, claim=claim).exists():
            return None
        now = timezone.now()
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=_next_number(delivery.pk),
            kind=AttemptKind.RECONCILE,
            started_at=now,
            settled_at=now,
            outcome=result.outcome if decision == "settle" else AttemptOutcome.UNKNOWN,
            error_code=decision if decision != "settle" else result.code or "found",
            error_message=result.message,
            raw_response=result.raw or None,
            provider_message_id=result.provider_message_id,
        )
        delivery.claim, delivery.lease_until, delivery.updated_at = "", None, now
        fields = ["claim", "lease_until", "updated_at"]
        if decision == "settle":
            apply_result(delivery, result, now=now, started_at=now)
            fields = [
                "status",
                "claim",
                "lease_until",
                "last_error_code",
                "last_error_message",
                "provider_message_id",
                "duplicate_of",
                "not_before",
                "enqueued_at",
                "finished_at",
                "updated_at",
            ]
        elif decision in ("resend_same_key", "no_record_resend", "resend_at_least_once"):
            if decision == "no_record_resend":  # the provider never took it: its secondary may
                fail_over(delivery, why=f"{delivery.account} timeout, no record", now=now)
            delivery.status, delivery.not_before, delivery.enqueued_at = DeliveryStatus.QUEUED, now, now
            fields += ["status", "not_before", "enqueued_at"]
            due = [(delivery.pk, delivery.channel)]
            transaction.on_commit(lambda: enqueue(due))
        elif decision == "ask_again_later":
            delivery.not_before, delivery.enqueued_at = now + timedelta(seconds=backoff_seconds(2)), None
            fields += ["not_before", "enqueued_at"]
        else:  # settled as unknown for good
            delivery.finished_at = now
            delivery.last_error_code, delivery.last_error_message = decision, result.message
            fields += ["finished_at", "last_error_code", "last_error_message"]
        delivery.save(update_fields=fields)
        if "status" in fields or "finished_at" in fields:
            status_changes_record(
                changes=[(delivery.pk, delivery.status)], at=now, source=ChangeSource.RECONCILE, code=decision
            )
    logger.info("delivery %s %s: reconciled, %s", delivery.pk, delivery.channel, decision)
    return decision


def _decide(delivery: Delivery, now) -> tuple[str, DeliveryResult]:
    backend = backend_for(delivery.channel)
    mode = backend.reconcile_for(delivery) if backend is not None else Reconcile.NONE
    at_least_once = bool((delivery.content.get("options") or {}).get("at_least_once"))
    if mode == Reconcile.DEDUP:
        first = (
            DeliveryAttempt.objects.filter(delivery=delivery, kind=AttemptKind.SEND, outcome=AttemptOutcome.UNKNOWN)
            .order_by("started_at")
            .values_list("started_at", flat=True)
            .first()
        ) or now
        closes = first + backend.dedup_window - WINDOW_MARGIN
        if now < closes:
            return "resend_same_key", DeliveryResult(
                AttemptOutcome.UNKNOWN,
                message=f"The provider drops a repeat of this key until {closes:%Y-%m-%d %H:%M:%S} UTC: resent.",
            )
        return "dedup_window_passed", DeliveryResult(
            AttemptOutcome.UNKNOWN,
            message="The provider's de-duplication window has passed; not resent, to be safe. Retry by hand if needed.",
        )
    if mode == Reconcile.QUERY:
        try:
            found = backend.query(delivery)
        except Exception as err:  # a bug of ours: ask again later, bounded
            logger.exception("delivery %s: query raised", delivery.pk)
            found = DeliveryResult(AttemptOutcome.TRANSIENT, "internal_error", repr(err))
        if found is None:
            return "no_record_resend", DeliveryResult(
                AttemptOutcome.UNKNOWN, message="The provider has no record of this message: sent again."
            )
        if found.outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.UNKNOWN, AttemptOutcome.TOKEN_EXPIRED):
            asked = DeliveryAttempt.objects.filter(delivery=delivery, kind=AttemptKind.RECONCILE).count()
            if asked + 1 >= MAX_QUERIES:
                return "provider_cannot_say", found
            return "ask_again_later", found
        return "settle", found
    if at_least_once:
        return "resend_at_least_once", DeliveryResult(
            AttemptOutcome.UNKNOWN, message="No way to ask this provider; the binding says at least once: sent again."
        )
    return "no_way_to_ask", DeliveryResult(
        AttemptOutcome.UNKNOWN,
        message="This provider cannot be asked whether it took the message; settled as unknown, not resent.",
    )
