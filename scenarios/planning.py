"""Planning an event's messages: for each enabled rule of its scenario, whether it applies to
the data, to whom, when (now, or a reminder at anchor + offset, or too late), and what it says.
Nothing is written here; intake.py writes what was planned, or refuses the event with every
problem found. In a batch, what depends on the data alone is decided once per distinct data
(`PlanMemo`).
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .catalog import ScenarioConfig
from .errors import EventRejected
from .limits import YEARS_AHEAD, rendered_problems
from .models import Rule
from .rendering import RenderError, render_message
from .services import condition_matches, render_context

# Set by the one-time-code flow on the events it makes; the API's serializers never pass it.
OTP_FLAG = "_otp"


@dataclass
class Planned:
    """One message decided: a rule's, to one recipient; `rendered` is shared by every recipient
    of the rule (and in a batch, of the same data)."""

    rule: Rule
    recipient_entry: object
    due_at: datetime
    immediate: bool
    rendered: dict
    skip_reason: str = ""


class PlanMemo:
    """What a batch decided once per (scenario or rule, data): the schema's and the conditions'
    verdicts, a rule's timing and rendering. Events of a batch often carry the same data for
    different people; the answer depends on the data (and the batch's clock) alone, never on the
    recipients. Lives for one call of events_accept, so the catalog it saw cannot change under it."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self._seen: dict[tuple, object] = {}

    def data_key(self, data: dict) -> str | None:
        """The data's canonical JSON; None (no memo) for values JSON does not carry as they are."""
        if not self.enabled:
            return None
        try:
            return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError):
            return None

    def get(self, key: tuple, compute, *args, **kwargs):
        """compute(*args, **kwargs), once per key; every time when the key ends in None (no data key)."""
        if key[-1] is None:
            return compute(*args, **kwargs)
        try:
            return self._seen[key]
        except KeyError:
            value = self._seen[key] = compute(*args, **kwargs)
            return value


def plan_messages(
    config: ScenarioConfig, payload: dict, data: dict, *, now: datetime, memo: PlanMemo, data_key: str | None
):
    """Decide every message before anything is written, so a bad event changes nothing."""
    recipients = payload.get("recipients") or {}
    errors: dict[str, list[str]] = {}
    planned: list[Planned] = []
    skipped: list[dict] = []
    for rule in config.rules:
        if rule.template.is_verification_code and not payload.get(OTP_FLAG):
            # A code is made only by POST /api/v1/otp (scenarios/otp.py), never by a plain event.
            skipped.append({"rule": rule.code, "reason": "needs_otp_endpoint"})
            continue
        matches = memo.get(("if", rule.pk, data_key), condition_matches, config.conditions[rule.pk], data)
        if not matches:
            skipped.append({"rule": rule.code, "reason": "condition_not_met"})
            continue
        entries = recipients.get(rule.audience) or rule.default_recipients
        if not entries:
            errors.setdefault(f"recipients.{rule.audience}", []).append(
                f"The rule {rule.code} needs at least one {rule.audience}."
            )
            continue
        decided = memo.get(("rule", rule.pk, data_key), rule_decision, config, rule, data, now=now)
        for path, problems in decided.errors.items():
            errors.setdefault(path, []).extend(problems)
        if decided.failed:
            continue
        planned.extend(
            Planned(rule, entry, decided.due_at, decided.immediate, decided.rendered, decided.skip_reason)
            for entry in entries
        )
    if errors:
        raise EventRejected("invalid_event", "The event cannot be delivered as sent.", errors)
    if config.rules and all(s["reason"] == "needs_otp_endpoint" for s in skipped) and len(skipped) == len(config.rules):
        raise EventRejected(
            "use_otp_endpoint",
            f"{config.scenario.code} sends one-time codes: ask for one with POST /api/v1/otp.",
            {"event": ["verification-code scenario"]},
        )
    return planned, skipped


@dataclass(frozen=True)
class RuleDecision:
    """What a rule makes of an event's data, whoever the recipients: when, and what it says."""

    due_at: datetime | None = None
    immediate: bool = False
    rendered: dict = field(default_factory=dict)
    skip_reason: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)
    failed: bool = False  # no message for this rule (its errors say why)


def rule_decision(config: ScenarioConfig, rule: Rule, data: dict, *, now: datetime) -> RuleDecision:
    errors: dict[str, list[str]] = {}
    due_at, immediate, skip_reason = now, True, ""
    if rule.is_timed:
        anchor = _anchor_time(data, rule, errors)
        if anchor is None:
            return RuleDecision(errors=errors, failed=True)
        due_at, immediate, skip_reason = timing(rule, anchor, now=now)
    rendered = {}
    if immediate:
        try:
            rendered = render_message(
                template=rule.template,
                bindings=config.bindings.get(rule.template_id, ()),
                context=render_context(rule.template, data),
            )
        except RenderError as err:
            errors[f"template.{rule.template.code}.{err.field}"] = [err.message]
            return RuleDecision(errors=errors, failed=True)
        for path, problems in rendered_problems(rendered).items():
            errors.setdefault(f"template.{rule.template.code}.{path}", []).extend(problems)
    return RuleDecision(due_at, immediate, rendered, skip_reason, errors)


def timing(rule: Rule, anchor: datetime, *, now: datetime) -> tuple[datetime, bool, str]:
    """(due at, send now?, skip reason) for a timed rule. A reminder whose time has passed is sent
    at once within the rule's grace window, and otherwise skipped as `too_late`."""
    due_at = anchor + timedelta(minutes=rule.offset_minutes)
    if due_at > now:
        return due_at, False, ""
    if now - due_at <= timedelta(minutes=rule.grace_minutes):
        return now, True, ""
    return due_at, False, "too_late"


def date_in_range(value: datetime, *, now: datetime | None = None) -> bool:
    """Within 100 years back and YEARS_AHEAD ahead: later dates are typos, and the far ones
    overflow when a reminder's offset is added."""
    now = now or timezone.now()
    try:
        return now - timedelta(days=36525) <= value <= now + timedelta(days=366 * YEARS_AHEAD)
    except OverflowError:
        return False


def parse_anchor(raw) -> datetime | None:
    """An anchor time from the data: ISO 8601, local time when naive; None when not one or out of range."""
    try:
        value = parse_datetime(raw) if isinstance(raw, str) else None
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, timezone.get_default_timezone())
    except (ValueError, OverflowError):
        return None
    return value if value is not None and date_in_range(value) else None


def _anchor_time(data: dict, rule: Rule, errors: dict) -> datetime | None:
    value = parse_anchor(data.get(rule.anchor_field))
    if value is None:
        errors.setdefault(f"data.{rule.anchor_field}", []).append(
            f"The rule {rule.code} needs an ISO 8601 date-time here, at most {YEARS_AHEAD} years ahead."
        )
    return value
