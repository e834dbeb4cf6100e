"""The delivery engine: take delivery requests, keep them in the outbox, send, retry, finish."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from .addresses import address_for, masked_address
from .models import (
    AttemptOutcome,
    ChangeSource,
    Channel,
    ChannelAccount,
    Delivery,
    DeliveryStatus,
    Recipient,
    SubscribeConsent,
)
from .providers import BACKENDS, backend_for
from .routing import account_for, accounts_by_channel
from .rows import rows_insert, rows_where, values_copy
from .timeline import status_changes_record

logger = logging.getLogger(__name__)

# Rows per INSERT, and ids per IN (...) read, for fan-outs to many recipients.
BULK_BATCH = 2000
# Deliveries per task: an inbox row is cheap, so many; provider deliveries settings.PROVIDER_CHUNK
# (all in flight together on the event loop, channels/flight.py). Reconciliations 20 a task.
ENQUEUE_CHUNK = {Channel.INBOX: 200}
DEFAULT_ENQUEUE_CHUNK = 20


@dataclass(frozen=True)
class DeliveryRequest:
    """What a layer above asks of channels: send this content to this person over this channel."""

    channel: str
    recipient: Recipient
    content: dict
    idempotency_key: str
    not_before: datetime | None = None
    event_ref: int | None = None
    message_ref: int | None = None
    template_code: str = ""
    account: ChannelAccount | None = None
    # Set by the layer above's policies: `skipped` with a reason (opted_out, quiet_hours, capped,
    # deduplicated), or `deferred` until not_before (quiet hours).
    status: str = ""
    reason: str = ""


def deliveries_create(
    *, requests: list[DeliveryRequest], accounts: dict[str, list[ChannelAccount]] | None = None
) -> list[Delivery]:
    """Write deliveries in the caller's transaction (the outbox); each due one is enqueued on commit.

    `accounts`: the enabled accounts by channel, when the caller keeps them (the intake's catalog);
    read here otherwise. A request whose recipient has no address on its channel is kept as
    skipped `no_address`.
    """
    now = timezone.now()
    accounts = accounts_enabled() if accounts is None else accounts
    created = rows_insert([Delivery(**_delivery_row(req, accounts, now=now)) for req in requests])
    _after_create([(d.pk, d.channel, d.status, d.enqueued_at is not None) for d in created], now=now)
    return created


def deliveries_write(
    *, requests: list[DeliveryRequest], accounts: dict[str, list[ChannelAccount]], ids: list[int]
) -> None:
    """deliveries_create for a batch that reserved the rows' keys (rows.ids_reserve, at least one
    per request, in order): the same rows, timeline and enqueueing, written by COPY without a
    model instance each."""
    if len(ids) < len(requests):
        raise ValueError(f"{len(requests)} deliveries for {len(ids)} reserved keys")
    now = timezone.now()
    rows = []
    for pk, req in zip(ids, requests, strict=False):
        row = _delivery_row(req, accounts, now=now)
        account, recipient = row.pop("account"), row.pop("recipient")
        row.update(id=pk, account_id=account.pk if account is not None else None, recipient_id=recipient.pk)
        rows.append(row)
    values_copy(Delivery, rows, now=now)
    _after_create([(r["id"], r["channel"], r["status"], r["enqueued_at"] is not None) for r in rows], now=now)


def accounts_enabled() -> dict[str, list[ChannelAccount]]:
    """The enabled channel accounts by channel, as new deliveries are routed over them (one
    query: the disabled ones are read too, for a disabled default's secondary)."""
    return accounts_by_channel(ChannelAccount.objects.all())


def _delivery_row(req: DeliveryRequest, accounts: dict[str, list[ChannelAccount]], *, now: datetime) -> dict:
    """A new delivery's fields (attname → value) for one request: its account and masked address,
    and its first status: queued (enqueued now if due), deferred, or skipped with the reason."""
    account, route = account_for(channel=req.channel, requested=req.account, accounts=accounts.get(req.channel, []))
    address = address_for(channel=req.channel, recipient=req.recipient, account=account)
    row = {
        "channel": req.channel,
        "account": account,
        "route_reason": route if account is not None else "",
        "recipient": req.recipient,
        "address": masked_address(req.channel, address),  # the real one stays in the directory
        "content": req.content,
        "idempotency_key": req.idempotency_key,
        "not_before": req.not_before or now,
        "event_ref": req.event_ref,
        "message_ref": req.message_ref,
        "template_code": req.template_code,
        "status": DeliveryStatus.QUEUED,
        "enqueued_at": None,
    }
    # Settled or held here, visibly, with the reason: no address; a channel no backend can send
    # (queueing work that no one can do helps no one); the delivery policies' decision.
    if not address:
        held = (DeliveryStatus.SKIPPED, "no_address", f"The recipient has no address on {req.channel}.")
    elif req.channel not in BACKENDS:
        words = f"No provider backend for the channel {req.channel} yet."
        held = (DeliveryStatus.SKIPPED, "channel_not_implemented", words)
    elif req.status in (DeliveryStatus.SKIPPED, DeliveryStatus.DEFERRED):
        held = (req.status, req.reason, POLICY_WORDS.get(req.reason, req.reason))
    else:
        held = None
    if held is not None:
        status, code, words = held
        row.update(status=status, last_error_code=code, last_error_message=words)
        if status == DeliveryStatus.SKIPPED:
            row["finished_at"] = now
    elif row["not_before"] <= now:
        row["enqueued_at"] = now
    return row


def _after_create(created: list[tuple[int, str, str, bool]], *, now: datetime) -> None:
    """New deliveries' (id, channel, status, enqueued?): their first timeline rows, and the due
    ones handed to the workers after commit."""
    status_changes_record(changes=[(pk, status) for pk, _, status, _ in created], at=now, source=ChangeSource.CREATE)
    due = [(pk, channel) for pk, channel, _, enqueued in created if enqueued]
    if due:
        hand_off = _hand_off.get() or enqueue
        transaction.on_commit(lambda: hand_off(due))


# Where new due deliveries go after their commit: to the workers through the broker (`enqueue`),
# unless a worker making them takes them itself (`deliveries_handed_to`).
_hand_off: ContextVar[Callable[[list[tuple[int, str]]], None] | None] = ContextVar("hand_off", default=None)


@contextmanager
def deliveries_handed_to(take: Callable[[list[tuple[int, str]]], None]) -> Iterator[None]:
    """The due deliveries created inside this block go to `take` after their commit, not to the
    broker: a worker that made them sends them at once, rather than behind every task queued since
    (scenarios.tasks.expand_messages). They are queued rows like any other: if `take` never sends
    them, the outbox scan does (deliveries_requeue_due)."""
    token = _hand_off.set(take)
    try:
        yield
    finally:
        _hand_off.reset(token)


# Stored in English, as every reason is; the console shows them translated (gettext_noop: in the catalog).
POLICY_WORDS = {
    "opted_out": gettext_noop("The person turned this off in their preferences."),
    "quiet_hours": gettext_noop("Quiet hours: held until the window ends, or dropped when stale by then."),
    "capped": gettext_noop("Over the rule's frequency cap for this person."),
    "deduplicated": gettext_noop("The same message (same de-duplication key) went to this person within the window."),
}


def deliveries_release_deferred(*, now: datetime | None = None, limit: int = 2000) -> int:
    """Held deliveries (quiet hours) whose time has come go back to the queue and out."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.DEFERRED, not_before__lte=now)
            .order_by("not_before")
            .values_list("pk", "channel")[:limit]
        )
        if due:
            Delivery.objects.filter(pk__in=[pk for pk, _ in due]).update(
                status=DeliveryStatus.QUEUED, enqueued_at=now, updated_at=now
            )
            status_changes_record(
                changes=[(pk, DeliveryStatus.QUEUED) for pk, _ in due],
                at=now,
                source=ChangeSource.SCAN,
                code="quiet_hours",
            )
            transaction.on_commit(lambda: enqueue(due))
    return len(due)


def enqueue(deliveries: list[tuple[int, str]]) -> None:
    """Hand (id, channel) deliveries to the workers, a chunk per task. If the broker is down they
    stay queued in the table, and the beat tick enqueues them again (deliveries_requeue_due)."""
    for chunk in delivery_chunks(deliveries):
        enqueue_chunk(chunk)


def enqueue_chunk(chunk: list[int]) -> None:
    """One task's deliveries to the broker; if it refuses, the outbox scan's first pass takes them."""
    from .tasks import deliver_many

    try:
        deliver_many.delay(chunk)
    except Exception:
        logger.exception("enqueue of deliveries %s failed; the outbox scan will retry them", chunk)
        _enqueue_failed(chunk, DeliveryStatus.QUEUED)


def delivery_chunks(deliveries: list[tuple[int, str]]) -> list[list[int]]:
    """A task's worth each: inbox rows 200 at a time, provider sends PROVIDER_CHUNK at a time
    (any channels together: they fly on one event loop). What fits one task of each kind goes as
    one task (one event's inbox row and its SMS: one broker message, not two)."""
    local: list[int] = []
    remote: list[int] = []
    for pk, channel in deliveries:
        backend = backend_for(channel)
        (local if backend is not None and backend.local else remote).append(pk)
    local_size = ENQUEUE_CHUNK[Channel.INBOX]
    if len(local) <= local_size and len(remote) <= settings.PROVIDER_CHUNK:
        return [local + remote] if local or remote else []
    chunks = [local[i : i + local_size] for i in range(0, len(local), local_size)]
    chunks += [remote[i : i + settings.PROVIDER_CHUNK] for i in range(0, len(remote), settings.PROVIDER_CHUNK)]
    return chunks


def enqueue_reconcile(delivery_ids: list[int]) -> None:
    """Hand unknown outcomes to the workers for reconciliation; the scan retries a lost enqueue."""
    from .tasks import reconcile_many

    for start in range(0, len(delivery_ids), DEFAULT_ENQUEUE_CHUNK):
        chunk = delivery_ids[start : start + DEFAULT_ENQUEUE_CHUNK]
        try:
            reconcile_many.delay(chunk)
        except Exception:
            logger.exception("enqueue of reconciliations %s failed; the outbox scan will retry them", chunk)
            _enqueue_failed(chunk, DeliveryStatus.UNKNOWN)


def _enqueue_failed(ids: list[int], status: str) -> None:
    """The broker refused the chunk: forget the enqueue time, so the first outbox scan after the
    broker is back takes these rows at once, not REQUEUE_AFTER_SECONDS after the failed try."""
    try:
        Delivery.objects.filter(pk__in=ids, status=status).update(enqueued_at=None)
    except Exception:  # the database is gone too: the scan retries them after the usual age
        logger.exception("could not clear the enqueue time of deliveries %s", ids)


UNSENT = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)


def _cancel_unsent(rows, *, reason: str, source: str, detail: str = "") -> int:
    """Cancel those of `rows` (a Delivery queryset) that have not gone out yet, held ones too,
    with their status-change rows (`detail`: who asked, for an operator's); the ones being sent
    finish as they go. Returns how many."""
    now = timezone.now()
    # No savepoint inside a caller's transaction (two statements each time): no caller goes on
    # after a failure here, so all or nothing is the caller's transaction's.
    with transaction.atomic(savepoint=False):
        ids = list(rows.select_for_update().filter(status__in=UNSENT).values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.CANCELLED, last_error_code=reason, finished_at=now, updated_at=now
        )
        status_changes_record(
            changes=[(pk, DeliveryStatus.CANCELLED) for pk in ids], at=now, source=source, code=reason, detail=detail
        )
    return len(ids)


def deliveries_cancel(*, message_refs: list[int], reason: str) -> int:
    """Cancel the deliveries of these messages that have not gone out yet (held ones too)."""
    rows = Delivery.objects.filter(message_ref__in=message_refs)
    return _cancel_unsent(rows, reason=reason, source=ChangeSource.CANCEL)


def deliveries_cancel_keyed(*, key_prefix: str, reason: str) -> int:
    """Cancel the deliveries whose idempotency key starts with `key_prefix` (a broadcast's
    `b<id>:`) that have not gone out yet. Only queued and deferred rows are looked at (their
    partial indexes), not the whole table."""
    rows = Delivery.objects.filter(idempotency_key__startswith=key_prefix)
    return _cancel_unsent(rows, reason=reason, source=ChangeSource.CANCEL)


def deliveries_cancel_recipient(*, recipient_id: int, reason: str) -> int:
    """Cancel one person's deliveries that have not gone out yet (an erasure asked by an operator)."""
    rows = Delivery.objects.filter(recipient_id=recipient_id)
    return _cancel_unsent(rows, reason=reason, source=ChangeSource.OPERATOR)


RECIPIENT_FIELDS = (
    "name",
    "phone",
    "wechat_mini_openid",
    "wechat_oa_openid",
    "wechat_unionid",
    "push_registration_ids",
    "wecom_userid",
    "locale",
)


def recipient_put(*, audience: str, external_id: str, **fields) -> tuple[Recipient, bool]:
    """Create or update one person's addresses; fields not given are left as they are."""
    unknown = set(fields) - set(RECIPIENT_FIELDS)
    if unknown:
        raise ValueError(f"unknown recipient fields: {sorted(unknown)}")
    return Recipient.objects.update_or_create(audience=audience, external_id=external_id, defaults=fields)


def recipients_resolve(*, named: dict[str, list]) -> dict[tuple[str, str], Recipient]:
    """The recipients an event names, per audience: plain external ids, or objects carrying
    addresses inline (`{"id": "p-42", "phone": ...}`) that update the directory. Unknown ids are
    created bare, so the inbox still reaches them and channels without an address skip with
    `no_address`. One read for all audiences; keyed by (audience, external id)."""
    inline: dict[tuple[str, str], dict] = {}
    wanted: dict[tuple[str, str], None] = {}  # ordered and de-duplicated; a set test, not a list scan
    for audience, entries in named.items():
        for entry in entries:
            if isinstance(entry, dict):
                key = (audience, str(entry["id"]))
                inline[key] = {k: v for k, v in entry.items() if k in RECIPIENT_FIELDS}
            else:
                key = (audience, str(entry))
            wanted[key] = None
    if not wanted:
        return {}

    def read(keys):
        found = {}
        keys = list(keys)
        rows = rows_where(
            Recipient,
            "(audience, external_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            [[a for a, _ in keys], [i for _, i in keys]],
        )
        if rows is not None:  # PostgreSQL: one statement whatever the count
            return {(r.audience, r.external_id): r for r in rows}
        # In slices: SQLite caps the number of query parameters. One statement per slice, every
        # audience in it (an event names two or three).
        for start in range(0, len(keys), BULK_BATCH):
            by_audience: dict[str, list[str]] = {}
            for audience, external_id in keys[start : start + BULK_BATCH]:
                by_audience.setdefault(audience, []).append(external_id)
            match = Q()
            for audience, ids in by_audience.items():
                match |= Q(audience=audience, external_id__in=ids)
            for r in Recipient.objects.filter(match):
                found[(r.audience, r.external_id)] = r
        return found

    known = read(wanted)
    missing = [k for k in wanted if k not in known]
    if missing:
        # Concurrent events may name the same new person: insert what is missing, ignore the
        # rows another transaction got in first, and read them all back.
        Recipient.objects.bulk_create(
            [Recipient(audience=a, external_id=i, **inline.get((a, i), {})) for a, i in missing],
            ignore_conflicts=True,
            batch_size=BULK_BATCH,
        )
        known.update(read(missing))
    for key, fields in inline.items():
        recipient = known[key]
        if any(getattr(recipient, k) != v for k, v in fields.items()):
            for name, value in fields.items():
                setattr(recipient, name, value)
            recipient.save(update_fields=[*fields, "updated_at"])
    return known


def consents_grant(*, audience: str, external_id: str, template_ids: list[str]) -> Recipient:
    """Add one mini-program subscribe consent per template id accepted (WeChat grants one send each)."""
    with transaction.atomic():
        recipient = recipients_resolve(named={audience: [external_id]})[(audience, external_id)]
        for template_id in template_ids:
            consent, created = SubscribeConsent.objects.select_for_update().get_or_create(
                recipient=recipient, template_id=template_id, defaults={"remaining": 1}
            )
            if not created:
                SubscribeConsent.objects.filter(pk=consent.pk).update(remaining=F("remaining") + 1)
    return recipient


def account_check(*, account: ChannelAccount) -> bool:
    """The admin's "test connection": asks the provider through the account's backend (no
    person is messaged, except a WeCom group robot's test line) and keeps the answer on the
    account: what the check proved, in the active language, or the provider's code and words.
    Never blank: a check that passes without words is kept as "connection works"."""
    backend = backend_for(account.channel)
    if backend is None:
        ok, text = False, "channel_not_implemented"
    else:
        result = backend.check(account)
        ok = result.outcome == AttemptOutcome.SENT
        if ok:
            text = result.message or gettext("connection works")
        else:
            text = f"{result.code}: {result.message}" if result.message else result.code
    ChannelAccount.objects.filter(pk=account.pk).update(
        checked_at=timezone.now(), check_ok=ok, check_message=text[:500]
    )
    account.check_ok, account.check_message = ok, text[:500]
    return ok


RETRYABLE = (
    DeliveryStatus.FAILED,
    DeliveryStatus.QUEUED,
    DeliveryStatus.CANCELLED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.DEFERRED,
)


def deliveries_retry(*, ids: list[int], operator: str = "") -> int:
    """Operations' "retry now": failed, cancelled, unknown or waiting deliveries go out again at
    once (one more attempt, whatever the count so far). Sent and skipped ones are left as they
    are. An unknown one is a person's decision to risk a repeat; one being reconciled right now
    (claimed) is left to finish. `operator` (the console user) is kept in each timeline row."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status__in=RETRYABLE, claim="")
            .values_list("pk", "channel")
        )
        Delivery.objects.filter(pk__in=[pk for pk, _ in due]).update(
            status=DeliveryStatus.QUEUED,
            not_before=now,
            enqueued_at=now,
            finished_at=None,
            lease_until=None,
            updated_at=now,
        )
        status_changes_record(
            changes=[(pk, DeliveryStatus.QUEUED) for pk, _ in due],
            at=now,
            source=ChangeSource.OPERATOR,
            code="retry",
            detail=operator,
        )
        transaction.on_commit(lambda: enqueue(due))
    return len(due)


def deliveries_cancel_ids(*, ids: list[int], reason: str = "cancelled_by_operator", operator: str = "") -> int:
    """Operations' "cancel": deliveries not gone out yet never will; `operator` as for a retry."""
    rows = Delivery.objects.filter(pk__in=ids)
    return _cancel_unsent(rows, reason=reason, source=ChangeSource.OPERATOR, detail=operator)
