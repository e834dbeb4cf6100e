from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from channels.models import AFTER_SENT, DeliveryStatus
from channels.selectors import deliveries_for_messages
from channels.wording import reason_label

from .models import ChannelBinding, Event, Importance, Message, MessageStatus

POLICY_REASONS = ("opted_out", "quiet_hours", "capped", "deduplicated")


def event_detail(*, client: str, event_id: int) -> dict | None:
    """One of the client's events with its messages and every delivery's status and last error."""
    event = Event.objects.filter(pk=event_id, client=client).select_related("scenario").first()
    if event is None:
        return None
    messages = list(event.messages.select_related("template", "recipient", "rule").order_by("id"))
    deliveries: dict[int, list] = {}
    for d in deliveries_for_messages(message_refs=[m.pk for m in messages]):
        deliveries.setdefault(d.message_ref, []).append(
            {
                "id": d.pk,
                "channel": d.channel,
                "status": d.status,
                "attempts": d.attempt_count,
                "last_error_code": d.last_error_code,
                "last_error_message": d.last_error_message,
                "finished_at": _local(d.finished_at),
                # Held by quiet hours: when it will go.
                "deferred_until": _local(d.not_before) if d.status == "deferred" else None,
                "route": d.route_reason,
            }
        )
    return {
        "id": event.pk,
        "event": event.scenario.code,
        "idempotency_key": event.idempotency_key,
        "subject": {"type": event.subject_type, "id": event.subject_id} if event.subject_id else None,
        "occurred_at": _local(event.occurred_at),
        "received_at": _local(event.received_at),
        "data": event.data,
        "messages": [
            {
                "id": m.pk,
                "rule": m.rule.code if m.rule else f"plan:{m.plan_step_id}",
                "audience": m.audience,
                "recipient": m.recipient.external_id,
                "template": m.template.code,
                "status": m.status,
                "status_reason": m.status_reason,
                "due_at": _local(m.due_at),
                "deliveries": deliveries.get(m.pk, []),
            }
            for m in messages
        ],
    }


def _local(moment):
    """Times in answers are the hospital's local time, as in the intake answer (+08:00)."""
    return timezone.localtime(moment).isoformat() if moment else None


@dataclass
class TimelineEntry:
    at: datetime
    what: str
    detail: str = ""
    delivery_id: int | None = None
    tone: str = ""  # "ok", "bad" or "" for the admin's colours
    step: int = 0  # the entry's place in a message's life, for entries in the same second
    ref: int = 0  # the message or delivery it is about


# Where each kind of entry comes in the life of a message: the order within one second, where
# clocks of web, worker and database could otherwise shuffle them.
EVENT, PLANNED, DISPATCHED, QUEUED, ATTEMPT, SETTLED, ENDED = range(7)


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def messages_timeline(*, messages: list[Message], event: Event | None = None) -> list[TimelineEntry]:
    """What happened, in order: the event, each message planned and dispatched, each delivery
    queued, every attempt with the provider's words, and how each delivery ended. Entries are in
    the console's language; codes stay beside their words."""
    entries = []
    if event is not None:
        entries.append(
            TimelineEntry(event.received_at, _("event received"), f"{event.scenario.code} #{event.pk}", step=EVENT)
        )
        # What the event did to reminders planned by earlier events about the same subject (its rules'
        # cancelled-by / moved-by): they are those events' messages, not in this list.
        answer = event.answer or {}
        for key, what in (
            ("cancelled_reminders", _("reminders cancelled")),
            ("rescheduled_reminders", _("reminders moved")),
        ):
            if answer.get(key):
                subject = f"{event.subject_type} {event.subject_id}".strip()
                words = _("%(n)s pending reminders of %(subject)s") % {"n": answer[key], "subject": subject}
                entries.append(TimelineEntry(event.received_at, what, words, step=EVENT))
    by_pk = {m.pk: m for m in messages}
    for m in messages:
        who = f"{m.template.code} → {m.get_audience_display()} {m.recipient.external_id}"
        planned = _("#%(id)s %(who)s, due %(due)s") % {"id": m.pk, "who": who, "due": _when(m.due_at)}
        entries.append(TimelineEntry(m.created_at, _("message planned"), planned, step=PLANNED, ref=m.pk))
        if m.dispatched_at:
            entries.append(
                TimelineEntry(m.dispatched_at, _("message dispatched"), f"#{m.pk} {who}", step=DISPATCHED, ref=m.pk)
            )
        if m.status in (MessageStatus.CANCELLED, MessageStatus.SKIPPED):
            entries.append(
                TimelineEntry(
                    m.due_at,
                    m.get_status_display(),
                    f"#{m.pk} {reason_label(m.status_reason)}",
                    tone="bad",
                    step=ENDED,
                    ref=m.pk,
                )
            )
    deliveries = list(deliveries_for_messages(message_refs=list(by_pk)).prefetch_related("attempts", "status_changes"))
    for d in deliveries:
        channel = d.get_channel_display()
        entries.append(
            TimelineEntry(d.created_at, _("delivery queued"), f"{channel} #{d.pk}", d.pk, step=QUEUED, ref=d.pk)
        )
        entries.extend(_policy_entries(d, by_pk.get(d.message_ref)))
        for a in d.attempts.all():
            words = f"{reason_label(a.error_code)} {a.error_message}".strip()
            if a.kind == "reconcile":
                what = _("reconciliation: %(outcome)s") % {"outcome": a.get_outcome_display()}
            else:
                what = _("attempt %(number)d: %(outcome)s") % {"number": a.number, "outcome": a.get_outcome_display()}
            key = f" {_('provider key')} {a.provider_key}" if a.provider_key else ""
            entries.append(
                TimelineEntry(
                    a.started_at,
                    what,
                    f"{channel} #{d.pk} {a.duration_ms} ms{key} {words}".strip(),
                    d.pk,
                    "ok" if a.outcome == "sent" else "bad",
                    step=ATTEMPT,
                    ref=d.pk,
                )
            )
        if d.finished_at:
            entries.append(
                TimelineEntry(
                    d.finished_at,
                    d.get_status_display(),
                    f"{channel} #{d.pk} {reason_label(d.last_error_code)}".strip(),
                    d.pk,
                    "ok" if d.status in ("sent", "delivered", "read", "clicked", "deduplicated") else "bad",
                    step=SETTLED,
                    ref=d.pk,
                )
            )
        for change in d.status_changes.all():
            if change.status in AFTER_SENT and change.status != DeliveryStatus.SENT:
                # What the provider or the person reported later; a late report is listed, unapplied.
                late = "" if change.applied else " (" + _("late, not applied") + ")"
                entries.append(
                    TimelineEntry(
                        change.at,
                        change.get_status_display(),
                        f"{channel} #{d.pk} {change.get_source_display()} {change.code}{late}".strip(),
                        d.pk,
                        "bad" if change.status == DeliveryStatus.UNDELIVERED else "ok",
                        step=SETTLED,
                        ref=d.pk,
                    )
                )
    # By the second, then by the step in a message's life, then by id, then by the exact time.
    return sorted(entries, key=lambda e: (e.at.replace(microsecond=0), e.step, e.ref, e.at))


def policy_reason_label(code: str) -> str:
    labels = {
        "opted_out": _("turned off in the person's preferences"),
        "quiet_hours": _("quiet hours"),
        "capped": _("over the rule's frequency cap"),
        "deduplicated": _("the same message within the de-duplication window"),
    }
    # Other reasons (a channel's no_address, no_consent…) in the words the deliveries use.
    return str(labels[code]) if code in labels else reason_label(code)


def _policy_entries(d, message: Message | None) -> list[TimelineEntry]:
    """The delivery policies' decisions about one delivery (scenarios/policies.py), in words."""
    entries = []
    if d.status == "deferred" or (d.status == "skipped" and d.last_error_code in POLICY_REASONS):
        if d.status == "deferred":
            what = _("policy: held until %(time)s") % {"time": _local(d.not_before)}
        else:
            what = _("policy: not sent")
        detail = f"{d.get_channel_display()} #{d.pk} {policy_reason_label(d.last_error_code)}"
        entries.append(TimelineEntry(d.created_at, what, detail, d.pk, "bad", step=QUEUED, ref=d.pk))
    chain = (message.rule.fallback_chain or []) if message is not None and message.rule is not None else []
    if d.channel in chain and chain.index(d.channel) > 0:
        entries.append(
            TimelineEntry(
                d.created_at,
                _("fallback chain: next channel"),
                f"{d.get_channel_display()} #{d.pk}",
                d.pk,
                step=QUEUED,
                ref=d.pk,
            )
        )
    if d.route_reason.startswith(("failover", "circuit_open")):
        entries.append(
            TimelineEntry(
                d.updated_at, _("provider failover"), f"#{d.pk} {d.route_reason}", d.pk, step=ATTEMPT, ref=d.pk
            )
        )
    return entries


def preferences_locked(*, audience: str) -> dict[str, list[str]]:
    """Category → channels that critical rules or templates of this audience send over: no
    preference silences those, so the preferences API shows them as locked."""
    locked: dict[str, set[str]] = {}
    rows = (
        ChannelBinding.objects.filter(enabled=True, template__rules__audience=audience, template__rules__enabled=True)
        .filter(Q(template__critical=True) | Q(template__rules__importance=Importance.CRITICAL))
        .values_list("template__category", "channel")
        .distinct()
    )
    for category, channel in rows:
        locked.setdefault(category, set()).add(channel)
    return {category: sorted(channels) for category, channels in sorted(locked.items())}
