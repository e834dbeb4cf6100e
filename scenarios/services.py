"""Messages to deliveries: conditions and schemas, handing rendered messages to channels, and
firing scheduled reminders when their time comes. Event intake is in intake.py."""

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from channels.providers.sms import CODE_SLOT  # verification-code templates render this slot
from channels.services import deliveries_create, deliveries_write

from .catalog import bindings_for, channel_accounts
from .models import ChannelBinding, Message, MessageStatus, Template
from .policies import policy_requests
from .rendering import RenderError, render_message
from .schemas import CompiledSchema

logger = logging.getLogger(__name__)


def schema_errors(
    validator: Draft202012Validator | CompiledSchema | None, instance, *, prefix: str
) -> dict[str, list[str]]:
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


def condition_matches(condition: Draft202012Validator | CompiledSchema | None, data: dict) -> bool:
    if condition is None:
        return True
    try:
        return condition.is_valid(data)
    except SchemaError:
        logger.exception("rule condition is not a valid JSON Schema")
        return False


def render_context(template: Template, data: dict) -> dict:
    context = dict(data)
    if template.is_verification_code:
        context["code"] = CODE_SLOT
    return context


def deliver_messages(
    messages: list[Message],
    *,
    bindings: dict[int, tuple[ChannelBinding, ...]],
    version: int | None = None,
    delivery_ids: list[int] | None = None,
) -> None:
    """Hand rendered messages to channels, one delivery per enabled binding of the template, each
    decided by the delivery policies (scenarios/policies.py). `version`: the catalog version the
    caller read (the intake's), so the policies' settings and the accounts need no second read.
    `delivery_ids`: keys the caller reserved (one per binding of each message, at least), so the
    deliveries go by COPY."""
    requests = policy_requests(messages, bindings=bindings, version=version)
    if not requests:
        return
    accounts = channel_accounts(version=version)
    if delivery_ids is None:
        deliveries_create(requests=requests, accounts=accounts)
    else:
        deliveries_write(requests=requests, accounts=accounts, ids=delivery_ids)


def messages_fire_due(
    *, now: datetime | None = None, limit: int | None = None, message_ids: list[int] | None = None
) -> int:
    """Render and dispatch scheduled messages whose time has come (or just these ones, if due);
    each fires exactly once, even with several scanners at once (rows claimed with
    SELECT ... FOR UPDATE SKIP LOCKED)."""
    now = now or timezone.now()
    limit = limit or settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
    with transaction.atomic():
        claim = Message.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            status=MessageStatus.SCHEDULED, due_at__lte=now
        )
        if message_ids is not None:
            claim = claim.filter(pk__in=message_ids)
        due = list(
            claim.select_related("rule", "template", "template__link", "recipient", "event").order_by("due_at")[:limit]
        )
        ready = []
        bindings = bindings_for({m.template_id for m in due})
        for message in due:
            try:
                message.rendered = render_message(
                    template=message.template,
                    bindings=bindings.get(message.template_id, ()),
                    context=render_context(message.template, {**message.event.data, **message.data_overrides}),
                )
            except RenderError as err:
                message.status, message.status_reason = MessageStatus.FAILED, f"render_failed: {err}"
                message.save(update_fields=["status", "status_reason"])
                continue
            message.status, message.dispatched_at = MessageStatus.DISPATCHED, now
            message.save(update_fields=["rendered", "status", "dispatched_at"])
            ready.append(message)
        deliver_messages(ready, bindings=bindings)
    return len(due)


def reminders_cancel(*, message_ids: list[int], reason: str) -> int:
    """Cancel reminders that have not fired yet; those already sent or cancelled are left alone."""
    with transaction.atomic():
        return Message.objects.filter(pk__in=message_ids, status=MessageStatus.SCHEDULED).update(
            status=MessageStatus.CANCELLED, status_reason=reason[:255]
        )
