"""Recurring broadcasts: each RecurringBroadcast keeps one django-celery-beat PeriodicTask on its
crontab; each firing is an ordinary event, idempotent per minute, so a beat that fires twice
sends once. One whose event the intake would refuse is refused at save (the admin's form asks
recurring_broadcast_problems); a run refused all the same (the scenario changed since) is logged
at ERROR by name."""

import json
import logging

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from .catalog import scenario_config
from .envelope import recipients_problems
from .errors import EventRejected
from .intake import event_accept
from .models import RecurringBroadcast, Scenario
from .planning import PlanMemo, plan_messages
from .services import schema_errors

logger = logging.getLogger(__name__)

TASK = "scenarios.tasks.send_broadcast"


def recurring_broadcast_problems(*, scenario: Scenario, data, recipients, enabled: bool = True) -> dict[str, list[str]]:
    """Everything that would get the broadcast's event refused at each run, by field path (empty:
    it would be accepted): the intake's own checks (the scenario's schema, then its rules' planning:
    recipients per audience, rendering, verification-code rules), nothing written."""
    problems: dict[str, list[str]] = {}
    config = scenario_config(scenario.code)
    if config is None:
        return {"scenario": [gettext("No such scenario.")]}
    scenario_words = problems.setdefault("scenario", [])
    if enabled and not config.scenario.enabled:
        scenario_words.append(gettext("The scenario is disabled: every run would be refused."))
    if not config.rules:
        scenario_words.append(gettext("The scenario has no enabled rule: a run would send nothing."))
    elif all(rule.template.is_verification_code for rule in config.rules):
        # Its rules are left out of plain events (planning.py: needs_otp_endpoint): codes come from POST /api/v1/otp.
        scenario_words.append(gettext("A verification-code scenario: its codes are sent one by one, never broadcast."))
    if not scenario_words:
        del problems["scenario"]
    problems.update(recipients_problems(recipients, prefix="recipients"))
    if not isinstance(data, dict):
        problems["data"] = [gettext("An object.")]
    else:
        problems.update(schema_errors(config.data_validator, data, prefix="data"))
    if problems:
        return problems
    try:
        plan_messages(
            config, {"recipients": recipients}, data, now=timezone.now(), memo=PlanMemo(enabled=False), data_key=None
        )
    except EventRejected as err:
        problems.update(err.fields)
    return problems


def schedule_problem(crontab: CrontabSchedule) -> str:
    """Why a timetable does not suit a broadcast, or "": at most once an hour (one minute value),
    so a slip such as django-celery-beat's default `* * * * *` cannot message people every minute."""
    try:
        minutes = crontab.schedule.minute
    except ValueError:
        return gettext("Not a valid timetable.")
    if len(minutes) > 1:
        return gettext(
            "A broadcast runs at most once an hour: choose a timetable with one minute value "
            "(e.g. minute 0, hour 9: every day at 09:00)."
        )
    return ""


@transaction.atomic
def broadcast_schedule_sync(*, broadcast: RecurringBroadcast) -> PeriodicTask:
    """Create or update the broadcast's periodic task to match it."""
    task = broadcast.periodic_task or PeriodicTask(name=f"broadcast:{broadcast.pk}", task=TASK)
    task.crontab = broadcast.crontab
    task.args = json.dumps([broadcast.pk])
    task.enabled = broadcast.enabled
    task.description = broadcast.name
    task.save()
    if broadcast.periodic_task_id != task.pk:
        RecurringBroadcast.objects.filter(pk=broadcast.pk).update(periodic_task=task)
        broadcast.periodic_task = task
    return task


@transaction.atomic
def broadcast_delete(*, broadcast: RecurringBroadcast) -> None:
    task = broadcast.periodic_task
    broadcast.delete()
    if task is not None:
        task.delete()


def broadcast_send(*, broadcast_id: int, now=None) -> dict | None:
    """Send one occurrence now; the idempotency key is the local minute it fired for."""
    broadcast = RecurringBroadcast.objects.select_related("scenario").filter(pk=broadcast_id, enabled=True).first()
    if broadcast is None:
        return None
    now = now or timezone.now()
    minute = timezone.localtime(now).strftime("%Y%m%dT%H%M")
    try:
        answer, _ = event_accept(
            client="recurring-broadcasts",
            payload={
                "event": broadcast.scenario.code,
                "idempotency_key": f"broadcast-{broadcast.pk}-{minute}",
                "data": broadcast.data,
                "recipients": broadcast.recipients,
            },
        )
    except EventRejected as err:
        # Nothing was sent: kept on the row for the console's list (its check column says whether
        # a run now would pass), and logged.
        words = "; ".join(f"{path}: {' '.join(map(str, ws))}" for path, ws in (err.fields or {}).items())
        RecurringBroadcast.objects.filter(pk=broadcast.pk).update(
            last_failure=f"{err.error_code}: {words or err.message}"[:2000], last_failure_at=now
        )
        logger.error(
            "recurring broadcast %r (#%s) refused at %s: %s %s %s",
            broadcast.name,
            broadcast.pk,
            minute,
            err.error_code,
            err.message,
            err.fields,
        )
        return None
    if broadcast.last_failure:
        RecurringBroadcast.objects.filter(pk=broadcast.pk).update(last_failure="", last_failure_at=None)
    return answer
