"""Event intake: from reported business events to stored events, messages and deliveries.

One code path for one event and for a batch: every event is validated and planned on its own
(a bad one sinks no other; what depends on the data alone is decided once per distinct data in a
batch), then all the good new ones are written in one transaction: their keys reserved in one
statement, one COPY per table, no model instance per row. Idempotency is per client and key: the
same body again gets the first answer, another body under a used key is `idempotency_conflict`.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from channels.models import Delivery
from channels.rows import column_update, ids_reserve, rows_where, values_copy
from channels.services import deliveries_cancel, recipients_resolve

from .catalog import ScenarioConfig, catalog_version, scenario_config
from .errors import EventRejected
from .expansion import expansion_enqueue
from .groupcommit import GroupCommit
from .limits import ID_MAX_LENGTH, YEARS_AHEAD
from .models import Effect, Event, FollowUpPlan, Message, MessageStatus, Rule, Scenario
from .planning import PlanMemo, Planned, parse_anchor, plan_messages, timing
from .plans import plan_cancel, plan_enroll
from .policies import RuleMessage
from .services import deliver_messages, schema_errors

ANSWER_LIST_LIMIT = 100


@dataclass
class Outcome:
    """What POST /api/v1/events answers for one event: an answer, or the reason it was refused."""

    answer: dict | None = None
    created: bool = False
    error: EventRejected | None = None


@dataclass
class _Accepted:
    """An event that passed validation, with every message decided, not yet written."""

    index: int
    payload: dict
    fingerprint: str
    config: ScenarioConfig
    subject: tuple[str, str]
    planned: list[Planned]
    skipped: list[dict]
    effect: dict | None = None
    event: Event | None = None
    messages: list["_NewMessage"] = field(default_factory=list)


def request_fingerprint(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_accept(*, client: str, payload: dict) -> tuple[dict, bool]:
    """Accept one event. Returns (answer, created); raises EventRejected, having stored nothing.
    Outside a transaction, with the other single events of this process's threads at that moment
    (scenarios/groupcommit.py); inside one, alone, so that it commits or rolls back with it."""
    if settings.EVENT_GROUP_COMMIT and not transaction.get_connection().in_atomic_block:
        outcome = _single_events.submit(client, payload)
    else:
        (outcome,) = events_accept(client=client, payloads=[payload])
    if outcome.error is not None:
        raise outcome.error
    return outcome.answer, outcome.created


def events_accept(*, client: str, payloads: list[dict], defer_deliveries: bool = False) -> list[Outcome]:
    """Accept events, each answered exactly as if it had come alone. `defer_deliveries` (a batch):
    the immediate messages' deliveries are made by a worker right after the commit
    (scenarios/expansion.py), not in this transaction; the answers are the same."""
    now = timezone.now()
    version = catalog_version()
    fingerprints = [request_fingerprint(p) for p in payloads]
    keys = [p["idempotency_key"] for p in payloads]
    stored = _stored_events(client, set(keys))
    outcomes: list[Outcome | None] = [None] * len(payloads)
    first_with_key: dict[str, int] = {}
    accepted: list[_Accepted] = []
    memo = PlanMemo(enabled=len(payloads) > 1)
    for i, payload in enumerate(payloads):
        if keys[i] in stored:
            outcomes[i] = _replay(stored[keys[i]].request_hash, stored[keys[i]].answer, fingerprints[i])
        elif keys[i] not in first_with_key:
            first_with_key[keys[i]] = i
            try:
                accepted.append(_validate_and_plan(i, payload, fingerprints[i], now=now, version=version, memo=memo))
            except EventRejected as err:
                outcomes[i] = Outcome(error=err)

    if accepted:
        try:
            with transaction.atomic():
                _store(client, accepted, now=now, version=version, defer=defer_deliveries)
            for item in accepted:
                outcomes[item.index] = Outcome(answer=item.event.answer, created=True)
        except IntegrityError:
            # A concurrent request took one of these keys first: settle each event on its own.
            for item in accepted:
                outcomes[item.index] = _after_race(client, item, now=now, defer=defer_deliveries)

    for i in range(len(payloads)):
        if outcomes[i] is None:  # a key repeated inside this batch: as a retry of the first would be
            first = outcomes[first_with_key[keys[i]]]
            if first.error is None:
                outcomes[i] = _replay(fingerprints[first_with_key[keys[i]]], first.answer, fingerprints[i])
            else:
                outcomes[i] = events_accept(client=client, payloads=[payloads[i]], defer_deliveries=defer_deliveries)[0]
    return outcomes


# At most a web process's threads at once (WEB_THREADS, 8), so the limit is seldom reached.
_single_events = GroupCommit(lambda client, payloads: events_accept(client=client, payloads=payloads), limit=32)


def _stored_events(client: str, keys: set[str]) -> dict[str, Event]:
    """The client's events already stored under these keys (their hash and answer), by key."""
    fields = ("idempotency_key", "request_hash", "answer")
    found = rows_where(Event, "client = %s AND idempotency_key = ANY(%s)", [client, list(keys)], fields=fields)
    if found is None:
        found = Event.objects.filter(client=client, idempotency_key__in=keys).only(*fields)
    return {e.idempotency_key: e for e in found}


def _after_race(client: str, item: _Accepted, *, now: datetime, defer: bool = False) -> Outcome:
    existing = Event.objects.filter(client=client, idempotency_key=item.payload["idempotency_key"]).first()
    if existing is not None:
        return _replay(existing.request_hash, existing.answer, item.fingerprint)
    item.event, item.messages = None, []
    try:
        with transaction.atomic():
            _store(client, [item], now=now, defer=defer)
    except IntegrityError:
        existing = Event.objects.get(client=client, idempotency_key=item.payload["idempotency_key"])
        return _replay(existing.request_hash, existing.answer, item.fingerprint)
    return Outcome(answer=item.event.answer, created=True)


def _replay(stored_fingerprint: str, answer: dict, fingerprint: str) -> Outcome:
    if stored_fingerprint != fingerprint:
        return Outcome(
            error=EventRejected(
                "idempotency_conflict",
                "This idempotency key was already used with a different request body.",
                {"idempotency_key": ["already used with a different body"]},
                409,
            )
        )
    return Outcome(answer=answer, created=False)


def _validate_and_plan(
    index: int,
    payload: dict,
    fingerprint: str,
    *,
    now: datetime,
    version: int | None = None,
    memo: PlanMemo | None = None,
) -> _Accepted:
    config = scenario_config(payload["event"], version=version)
    if config is None:
        raise EventRejected("unknown_event", f"No scenario for the event {payload['event']!r}.", {"event": ["unknown"]})
    if not config.scenario.enabled:
        raise EventRejected(
            "scenario_disabled", f"The scenario {config.scenario.code} is disabled.", {"event": ["disabled"]}, 409
        )
    data = payload.get("data") or {}
    memo = memo or PlanMemo(enabled=False)
    data_key = memo.data_key(data)
    key = ("schema", config.scenario.pk, data_key)
    errors = memo.get(key, schema_errors, config.data_validator, data, prefix="data")
    if errors:
        errors = {path: list(problems) for path, problems in errors.items()}  # the memo's stay as they are
        raise EventRejected("invalid_data", "The event data does not match the scenario's schema.", errors)
    planned, skipped = plan_messages(config, payload, data, now=now, memo=memo, data_key=data_key)
    effect = _check_effect(config.scenario, payload, data, now=now) if config.scenario.effect else None
    return _Accepted(
        index=index,
        payload=payload,
        fingerprint=fingerprint,
        config=config,
        subject=_subject(config.scenario, payload, data),
        planned=planned,
        skipped=skipped,
        effect=effect,
    )


def _check_effect(scenario: Scenario, payload: dict, data: dict, *, now: datetime) -> dict:
    """A plan effect needs `data.plan` (an enabled plan's code), `data.enrollment_id` (at most
    ID_MAX_LENGTH characters), and to enrol, `data.start_date` and one patient."""
    errors: dict[str, list[str]] = {}
    plan = FollowUpPlan.objects.filter(code=str(data.get("plan", "")), enabled=True).first()
    if plan is None:
        errors["data.plan"] = ["Not the code of an enabled follow-up plan."]
    key = str(data.get("enrollment_id", ""))
    if not data.get("enrollment_id"):
        errors["data.enrollment_id"] = ["Required: the hospital's id of this enrollment."]
    elif len(key) > ID_MAX_LENGTH:  # the enrollment's column holds no more
        errors["data.enrollment_id"] = [_("At most %(limit)d characters.") % {"limit": ID_MAX_LENGTH}]
    effect = {"kind": scenario.effect, "plan": plan, "key": key}
    if scenario.effect == Effect.PLAN_ENROLL:
        start = plan_start(data.get("start_date"), today=timezone.localdate(now))
        if start is None:
            errors["data.start_date"] = [
                _("Required: the plan's first day, a real date (YYYY-MM-DD) at most %(years)d years from today.")
                % {"years": YEARS_AHEAD}
            ]
        patients = (payload.get("recipients") or {}).get("patient") or []
        if len(patients) != 1:
            errors["recipients.patient"] = ["Exactly one patient is enrolled per event."]
        effect.update(start=start, patient=patients[0] if len(patients) == 1 else None)
    if errors:
        raise EventRejected("invalid_event", "The event cannot be delivered as sent.", errors)
    return effect


def plan_start(raw, *, today: date) -> date | None:
    """A plan's first day from the data: a real date, YYYY-MM-DD, at most YEARS_AHEAD years from
    `today` either way (a typo otherwise, and the far ones overflow when a step's offset is added);
    None when it is not one."""
    try:
        start = parse_date(raw) if isinstance(raw, str) else None
    except ValueError:  # the shape of a date but none of the calendar's: 2026-02-30
        return None
    if start is None or abs((start - today).days) > 366 * YEARS_AHEAD:
        return None
    return start


def _subject(scenario: Scenario, payload: dict, data: dict) -> tuple[str, str]:
    subject = payload.get("subject") or {}
    if subject:
        return str(subject.get("type", "")), str(subject.get("id", ""))
    name = f"{scenario.subject_type}_id"
    if scenario.subject_type and name in data:
        subject_id = str(data[name])
        if len(subject_id) > ID_MAX_LENGTH:  # the subject's column holds no more
            raise EventRejected(
                "invalid_event",
                "The event cannot be delivered as sent.",
                {f"data.{name}": [_("An id of at most %(limit)d characters.") % {"limit": ID_MAX_LENGTH}]},
            )
        return scenario.subject_type, subject_id
    return "", ""


def recipient_ids(recipients: dict) -> dict[str, list[str]]:
    """The recipients as the event keeps them: external ids only. Inline addresses go to the
    directory (channels.Recipient), the one place a phone or an openid is kept."""
    return {
        audience: [str(e["id"]) if isinstance(e, dict) else str(e) for e in entries]
        for audience, entries in recipients.items()
    }


def _store(
    client: str, accepted: list[_Accepted], *, now: datetime, version: int | None = None, defer: bool = False
) -> None:
    """Write the accepted events, their messages and deliveries: every row's key reserved first
    (one statement), then one COPY per table, no model instance per row. `defer`: no deliveries
    here; the immediate messages wait for a worker's (scenarios/expansion.py). The events go first,
    answered already (the keys of their messages are known): a concurrent request with one of
    their idempotency keys waits there for this one, as with any insert. Only an event that
    cancelled or moved reminders, or enrolled in a plan, has its answer written again."""
    received = timezone.now()  # the events' receipt time, after intake read its clock
    people = recipients_resolve(named=_named(accepted))
    bindings = {}
    for item in accepted:
        bindings.update(item.config.bindings)
    planned = [plan for item in accepted for plan in item.planned]
    bound = 0 if defer else sum(len(bindings.get(plan.rule.template_id, ())) for plan in planned if plan.immediate)
    event_ids, message_ids, delivery_ids = ids_reserve(
        (Event, len(accepted)), (Message, len(planned)), (Delivery, bound)
    )
    keys = iter(message_ids)
    for item, event_id in zip(accepted, event_ids, strict=True):
        item.event = _new_event(client, item, event_id, now=now, received=received)
        item.messages = [
            _NewMessage.planned(next(keys), item, plan, people, received=received, defer=defer) for plan in item.planned
        ]
        item.event.answer = _answer(item, 0, 0)
    values_copy(Event, [_event_row(item.event) for item in accepted], now=received)
    messages = [m for item in accepted for m in item.messages]
    values_copy(Message, [m.row() for m in messages], now=received)
    dispatched = [m for m in messages if m.status == MessageStatus.DISPATCHED]
    if defer:
        pending = [m.pk for m in dispatched]
        if pending:
            transaction.on_commit(lambda: expansion_enqueue(pending))
    else:
        deliver_messages(dispatched, bindings=bindings, version=version, delivery_ids=delivery_ids)

    answered = {}
    for item in accepted:
        cancelled = _cancel_pending(item.event) if item.config.cancels else 0
        moved = _reschedule_pending(item.event, now=now) if item.config.reschedules else 0
        if cancelled or moved or item.effect:
            item.event.answer = _answer(item, cancelled, moved)
            if item.effect:
                item.event.answer["plan"] = _apply_effect(item, people, now=now)
            answered[item.event.pk] = item.event.answer
    column_update(Event, "answer", answered)


def _named(accepted: list[_Accepted]) -> dict[str, list]:
    """The people the events name, by audience, as recipients_resolve takes them."""
    named: dict[str, list] = {}
    for item in accepted:
        for plan in item.planned:
            named.setdefault(plan.rule.audience, []).append(plan.recipient_entry)
        if item.effect and item.effect.get("patient") is not None:
            named.setdefault("patient", []).append(item.effect["patient"])
    return named


def _new_event(client: str, item: _Accepted, pk: int, *, now: datetime, received: datetime) -> Event:
    """The event as it will be stored, its key reserved (written by _store once answered)."""
    event = Event(
        pk=pk,
        scenario=item.config.scenario,
        client=client,
        idempotency_key=item.payload["idempotency_key"],
        request_hash=item.fingerprint,
        subject_type=item.subject[0],
        subject_id=item.subject[1],
        data=item.payload.get("data") or {},
        recipients=recipient_ids(item.payload.get("recipients") or {}),
        occurred_at=item.payload.get("occurred_at") or now,
        received_at=received,
    )
    event._state.adding, event._state.db = False, router.db_for_write(Event)
    return event


def _event_row(event: Event) -> dict:
    return {f.attname: getattr(event, f.attname) for f in Event._meta.concrete_fields}


@dataclass(slots=True)
class _NewMessage(RuleMessage):
    """A message being written by COPY: what the policies (scenarios/policies.py, caps.py) and
    the answer read of a Message, without making one (Model.__init__ was a quarter of a batch)."""

    pk: int
    event: Event
    rule: Rule
    recipient: object  # channels.Recipient
    status: str
    status_reason: str
    due_at: datetime
    dispatched_at: datetime | None
    rendered: dict
    data_overrides: dict = field(default_factory=dict)
    deliveries_pending: bool = False

    @classmethod
    def planned(
        cls, pk: int, item: _Accepted, plan: Planned, people: dict, *, received: datetime, defer: bool = False
    ) -> "_NewMessage":
        entry = plan.recipient_entry
        external_id = str(entry["id"] if isinstance(entry, dict) else entry)
        return cls(
            pk=pk,
            event=item.event,
            rule=plan.rule,
            recipient=people[(plan.rule.audience, external_id)],
            status=(
                MessageStatus.SKIPPED
                if plan.skip_reason
                else MessageStatus.DISPATCHED
                if plan.immediate
                else MessageStatus.SCHEDULED
            ),
            status_reason=plan.skip_reason,
            # Not before the event's own receipt time: the event's record lists them in that order.
            dispatched_at=received if plan.immediate else None,
            due_at=plan.due_at,
            rendered=plan.rendered,
            deliveries_pending=defer and plan.immediate and not plan.skip_reason,
        )

    @property
    def event_id(self) -> int:
        return self.event.pk

    def row(self) -> dict:
        """The Message row (attname → value); the other fields take their defaults."""
        return {
            "id": self.pk,
            "event_id": self.event.pk,
            "rule_id": self.rule.pk,
            "template_id": self.rule.template_id,
            "recipient_id": self.recipient.pk,
            "audience": self.rule.audience,
            "subject_type": self.event.subject_type,
            "subject_id": self.event.subject_id,
            "status": self.status,
            "status_reason": self.status_reason,
            "dispatched_at": self.dispatched_at,
            "due_at": self.due_at,
            "rendered": self.rendered,
            "deliveries_pending": self.deliveries_pending,
        }


def _cancel_pending(event: Event) -> int:
    """Cancel the subject's pending reminders, planned by earlier events, whose rule lists this
    event in `cancel_on`."""
    if not event.subject_id:
        return 0
    pending = (
        Message.objects.select_for_update(of=("self",))
        .filter(
            status=MessageStatus.SCHEDULED,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            event_id__lt=event.pk,
        )
        .select_related("rule")
    )
    code = event.scenario.code
    ids = [m.pk for m in pending if m.rule is not None and code in (m.rule.cancel_on or [])]
    if ids:
        Message.objects.filter(pk__in=ids).update(
            status=MessageStatus.CANCELLED, status_reason=f"cancelled by {code} #{event.pk}"
        )
        deliveries_cancel(message_refs=ids, reason="cancelled")
    return len(ids)


def _apply_effect(item: _Accepted, people: dict, *, now: datetime) -> dict:
    effect = item.effect
    if effect["kind"] == Effect.PLAN_ENROLL:
        entry = effect["patient"]
        recipient = people[("patient", str(entry["id"] if isinstance(entry, dict) else entry))]
        enrollment = plan_enroll(
            event=item.event,
            plan=effect["plan"],
            recipient=recipient,
            key=effect["key"],
            start=effect["start"],
            now=now,
        )
        scheduled = Message.objects.filter(
            subject_type="plan_enrollment", subject_id=str(enrollment.pk), status=MessageStatus.SCHEDULED
        ).count()
        return {"enrollment_id": enrollment.pk, "status": enrollment.status, "scheduled_reminders": scheduled}
    cancelled = plan_cancel(plan=effect["plan"], key=effect["key"], reason=f"cancelled by event #{item.event.pk}")
    return {"cancelled_reminders": cancelled}


def _reschedule_pending(event: Event, *, now: datetime) -> int:
    """Move the subject's pending reminders, planned by earlier events, whose rule lists this
    event in `reschedule_on`, to the anchor time this event carries. They move in place (never a
    second reminder), render with the new time, and follow the late-arrival rule if already due."""
    if not event.subject_id:
        return 0
    code = event.scenario.code
    pending = (
        Message.objects.select_for_update(of=("self",))
        .filter(
            status=MessageStatus.SCHEDULED,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            event_id__lt=event.pk,
        )
        .select_related("rule")
    )
    moved = 0
    for message in pending:
        rule = message.rule
        if rule is None:
            continue
        anchor = parse_anchor(event.data.get(rule.anchor_field)) if rule.anchor_field else None
        if code not in (rule.reschedule_on or []) or anchor is None:
            continue
        due_at, send_now, skip_reason = timing(rule, anchor, now=now)
        message.due_at = now if send_now else due_at  # the scanner fires it within a second
        message.data_overrides = {**message.data_overrides, rule.anchor_field: event.data[rule.anchor_field]}
        if skip_reason:
            message.status, message.status_reason = MessageStatus.SKIPPED, skip_reason
        else:
            message.status_reason = f"moved by {code} #{event.pk}"
        message.save(update_fields=["due_at", "data_overrides", "status", "status_reason"])
        moved += 1
    return moved


def _answer(item: _Accepted, cancelled: int, moved: int) -> dict:
    tz = timezone.get_default_timezone()
    event = item.event
    return {
        "event_id": event.pk,
        "event": item.config.scenario.code,
        "subject": {"type": event.subject_type, "id": event.subject_id} if event.subject_id else None,
        "message_count": len(item.messages),
        # A broadcast to many people lists the first ANSWER_LIST_LIMIT; GET /events/{id} has all.
        "messages": [
            {
                "id": m.pk,
                "rule": m.rule.code,
                "audience": m.audience,
                "recipient": m.recipient.external_id,
                "template": m.template.code,
                "due_at": timezone.localtime(m.due_at, tz).isoformat(),
                "status": m.status,
                "scheduled": m.status == MessageStatus.SCHEDULED,
            }
            for m in item.messages[:ANSWER_LIST_LIMIT]
        ],
        "skipped_rules": item.skipped,
        "cancelled_reminders": cancelled,
        "rescheduled_reminders": moved,
    }
