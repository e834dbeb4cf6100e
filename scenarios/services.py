"""Event intake and message dispatch: from a reported business event to deliveries."""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from channels.services import DeliveryRequest, deliveries_cancel, deliveries_create, recipients_resolve

from .catalog import ScenarioConfig, bindings_for, scenario_config
from .models import ChannelBinding, Event, Message, MessageStatus, Rule, Scenario
from .rendering import RenderError, render_message

logger = logging.getLogger(__name__)

# Verification-code templates render this slot; channels puts the real code in at send time.
CODE_SLOT = "{code}"


class EventRejected(Exception):
    """The event cannot be accepted as sent; nothing was stored."""

    http_status = 400

    def __init__(self, code: str, message: str, fields: dict | None = None, http_status: int | None = None):
        super().__init__(message)
        self.error_code = code
        self.message = message
        self.fields = fields or {}
        if http_status:
            self.http_status = http_status


@dataclass
class _PlannedMessage:
    rule: Rule
    recipient_entry: object
    due_at: datetime
    immediate: bool
    rendered: dict = field(default_factory=dict)


def request_fingerprint(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema_errors(validator: Draft202012Validator | None, instance, *, prefix: str) -> dict[str, list[str]]:
    """Every way `instance` breaks the validator's schema, keyed by the field's dotted path."""
    if validator is None:
        return {}
    errors: dict[str, list[str]] = {}
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = ".".join([prefix, *[str(p) for p in err.absolute_path]])
        if err.validator == "required":
            # Name the missing property itself, not its parent.
            missing = err.message.split("'")[1] if "'" in err.message else ""
            path = f"{path}.{missing}" if missing else path
        errors.setdefault(path, []).append(err.message)
    return errors


def condition_matches(condition: Draft202012Validator | None, data: dict) -> bool:
    if condition is None:
        return True
    try:
        return condition.is_valid(data)
    except SchemaError:
        logger.exception("rule condition is not a valid JSON Schema")
        return False


def event_accept(*, client: str, payload: dict) -> tuple[dict, bool]:
    """Accept one event: validate, store it with its messages and deliveries in one transaction.

    Returns (answer, created). The same idempotency key with the same body returns the first
    answer with created=False; with another body it is rejected as `idempotency_conflict`.
    """
    fingerprint = request_fingerprint(payload)
    existing = Event.objects.filter(client=client, idempotency_key=payload["idempotency_key"]).first()
    if existing is not None:
        return _replay(existing, fingerprint), False

    config = scenario_config(payload["event"])
    if config is None:
        raise EventRejected("unknown_event", f"No scenario for the event {payload['event']!r}.", {"event": ["unknown"]})
    scenario = config.scenario
    if not scenario.enabled:
        raise EventRejected(
            "scenario_disabled", f"The scenario {scenario.code} is disabled.", {"event": ["disabled"]}, 409
        )
    data = payload.get("data") or {}
    errors = schema_errors(config.data_validator, data, prefix="data")
    if errors:
        raise EventRejected("invalid_data", "The event data does not match the scenario's schema.", errors)

    now = timezone.now()
    occurred_at = payload.get("occurred_at") or now
    subject_type, subject_id = _subject(scenario, payload, data)
    planned, skipped = _plan(config, payload, data, now=now)

    try:
        with transaction.atomic():
            event = Event.objects.create(
                scenario=scenario,
                client=client,
                idempotency_key=payload["idempotency_key"],
                request_hash=fingerprint,
                subject_type=subject_type,
                subject_id=subject_id,
                data=data,
                recipients=payload.get("recipients") or {},
                occurred_at=occurred_at,
            )
            cancelled = _cancel_pending(event) if config.cancels else 0
            messages = _store_messages(event, planned, now=now, bindings=config.bindings)
            event.answer = _answer(event, messages, skipped, cancelled)
            event.save(update_fields=["answer"])
    except IntegrityError:
        # A concurrent request with the same key won the race: answer as a replay.
        existing = Event.objects.filter(client=client, idempotency_key=payload["idempotency_key"]).first()
        if existing is None:
            raise
        return _replay(existing, fingerprint), False
    return event.answer, True


def _replay(event: Event, fingerprint: str) -> dict:
    if event.request_hash != fingerprint:
        raise EventRejected(
            "idempotency_conflict",
            "This idempotency key was already used with a different request body.",
            {"idempotency_key": ["already used with a different body"]},
            409,
        )
    return event.answer


def _subject(scenario: Scenario, payload: dict, data: dict) -> tuple[str, str]:
    subject = payload.get("subject") or {}
    if subject:
        return str(subject.get("type", "")), str(subject.get("id", ""))
    if scenario.subject_type and f"{scenario.subject_type}_id" in data:
        return scenario.subject_type, str(data[f"{scenario.subject_type}_id"])
    return "", ""


def _plan(config: ScenarioConfig, payload: dict, data: dict, *, now: datetime):
    """Decide every message before anything is written, so a bad event changes nothing."""
    recipients = payload.get("recipients") or {}
    errors: dict[str, list[str]] = {}
    planned: list[_PlannedMessage] = []
    skipped: list[dict] = []
    bindings = config.bindings
    for rule in config.rules:
        if not condition_matches(config.conditions[rule.pk], data):
            skipped.append({"rule": rule.code, "reason": "condition_not_met"})
            continue
        entries = recipients.get(rule.audience) or rule.default_recipients
        if not entries:
            errors.setdefault(f"recipients.{rule.audience}", []).append(
                f"The rule {rule.code} needs at least one {rule.audience}."
            )
            continue
        due_at, immediate = now, True
        if rule.is_timed:
            anchor = _anchor_time(data, rule, errors)
            if anchor is None:
                continue
            due_at = anchor + timedelta(minutes=rule.offset_minutes)
            immediate = False
        rendered = {}
        if immediate:
            try:
                rendered = render_message(
                    template=rule.template, bindings=bindings.get(rule.template_id, []), context=_context(rule, data)
                )
            except RenderError as err:
                errors.setdefault(f"template.{rule.template.code}.{err.field}", []).append(err.message)
                continue
        for entry in entries:
            planned.append(_PlannedMessage(rule, entry, due_at, immediate, rendered))
    if errors:
        raise EventRejected("invalid_event", "The event cannot be delivered as sent.", errors)
    return planned, skipped


def _anchor_time(data: dict, rule: Rule, errors: dict) -> datetime | None:
    raw = data.get(rule.anchor_field)
    value = parse_datetime(raw) if isinstance(raw, str) else None
    if value is None:
        errors.setdefault(f"data.{rule.anchor_field}", []).append(
            f"The rule {rule.code} needs an ISO 8601 date-time here."
        )
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value


def _context(rule: Rule, data: dict) -> dict:
    context = dict(data)
    if rule.template.is_verification_code:
        context["code"] = CODE_SLOT
    return context


def _store_messages(
    event: Event, planned: list[_PlannedMessage], *, now: datetime, bindings: dict[int, tuple[ChannelBinding, ...]]
) -> list[Message]:
    by_audience: dict[str, list] = {}
    for plan in planned:
        by_audience.setdefault(plan.rule.audience, []).append(plan.recipient_entry)
    resolved = recipients_resolve(named=by_audience)
    messages = []
    for plan in planned:
        external_id = str(
            plan.recipient_entry["id"] if isinstance(plan.recipient_entry, dict) else plan.recipient_entry
        )
        messages.append(
            Message(
                event=event,
                rule=plan.rule,
                template=plan.rule.template,
                recipient=resolved[(plan.rule.audience, external_id)],
                audience=plan.rule.audience,
                subject_type=event.subject_type,
                subject_id=event.subject_id,
                status=MessageStatus.DISPATCHED if plan.immediate else MessageStatus.SCHEDULED,
                dispatched_at=now if plan.immediate else None,
                due_at=plan.due_at,
                rendered=plan.rendered,
            )
        )
    messages = Message.objects.bulk_create(messages)
    immediate = [m for m, plan in zip(messages, planned, strict=True) if plan.immediate]
    _deliver(immediate, bindings=bindings)
    return messages


def _deliver(messages: list[Message], *, bindings: dict[int, tuple[ChannelBinding, ...]]) -> None:
    """Hand rendered messages to channels, one delivery per enabled binding of the template."""
    requests = []
    for message in messages:
        for binding in bindings.get(message.template_id, []):
            content = {
                "title": message.rendered["title"],
                "body": message.rendered["body"],
                "category": message.rendered["category"],
                "link": message.rendered["link"],
                **message.rendered["channels"].get(binding.channel, {}),
            }
            requests.append(
                DeliveryRequest(
                    channel=binding.channel,
                    recipient=message.recipient,
                    content=content,
                    idempotency_key=f"m{message.pk}:{binding.channel}",
                    event_ref=message.event_id,
                    message_ref=message.pk,
                    template_code=message.template.code,
                    account=binding.account,
                )
            )
    if requests:
        deliveries_create(requests=requests)


def _cancel_pending(event: Event) -> int:
    """Cancel the subject's pending reminders whose rule lists this event in `cancel_on`."""
    if not event.subject_id:
        return 0
    pending = (
        Message.objects.select_for_update()
        .filter(status=MessageStatus.SCHEDULED, subject_type=event.subject_type, subject_id=event.subject_id)
        .select_related("rule")
    )
    ids = [m.pk for m in pending if event.scenario.code in (m.rule.cancel_on or [])]
    if ids:
        Message.objects.filter(pk__in=ids).update(
            status=MessageStatus.CANCELLED, status_reason=f"cancelled by {event.scenario.code} #{event.pk}"
        )
        deliveries_cancel(message_refs=ids, reason="cancelled")
    return len(ids)


def _answer(event: Event, messages: list[Message], skipped: list[dict], cancelled: int) -> dict:
    tz = timezone.get_default_timezone()
    return {
        "event_id": event.pk,
        "event": event.scenario.code,
        "subject": {"type": event.subject_type, "id": event.subject_id} if event.subject_id else None,
        "messages": [
            {
                "id": m.pk,
                "rule": m.rule.code,
                "audience": m.audience,
                "recipient": m.recipient.external_id,
                "template": m.template.code,
                "due_at": timezone.localtime(m.due_at, tz).isoformat(),
                "scheduled": m.status == MessageStatus.SCHEDULED,
            }
            for m in messages
        ],
        "skipped_rules": skipped,
        "cancelled_reminders": cancelled,
    }


def messages_fire_due(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Render and dispatch scheduled messages whose time has come; each fires exactly once, even
    with several scanners at once (rows claimed with SELECT ... FOR UPDATE SKIP LOCKED)."""
    now = now or timezone.now()
    limit = limit or settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
    with transaction.atomic():
        due = list(
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=MessageStatus.SCHEDULED, due_at__lte=now)
            .select_related("rule", "template", "template__link", "recipient", "event")
            .order_by("due_at")[:limit]
        )
        ready = []
        bindings = bindings_for({m.template_id for m in due})
        for message in due:
            try:
                message.rendered = render_message(
                    template=message.template,
                    bindings=bindings.get(message.template_id, []),
                    context=_context(message.rule, message.event.data),
                )
            except RenderError as err:
                message.status, message.status_reason = MessageStatus.FAILED, f"render_failed: {err}"
                message.save(update_fields=["status", "status_reason"])
                continue
            message.status, message.dispatched_at = MessageStatus.DISPATCHED, now
            message.save(update_fields=["rendered", "status", "dispatched_at"])
            ready.append(message)
        _deliver(ready, bindings=bindings)
    return len(due)
