"""Follow-up plans (随访计划): enrol, materialize occurrences a rolling horizon ahead, stop.

Each occurrence becomes a scheduled Message (subject `plan_enrollment`/<enrollment id>), so it
fires through the same one-second scan as every reminder and stands in the admin's upcoming
reminders. Occurrences are computed in the hospital's wall-clock time (a 09:00 step is 09:00
local on either side of a DST change) and materialized once (a unique constraint), however often
the horizon scan runs.

An RRULE is walked lazily and at most SCAN_LIMIT occurrences from its start, never listed whole,
and a step whose RRULE the admin would now refuse (more than once a day, saved before that
check) is never materialized: no stored row can make a scan enumerate without end.
"""

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import islice

from dateutil.rrule import rrulestr
from django.db import transaction
from django.utils import timezone

from channels.models import Recipient

from .models import EnrollmentStatus, Event, FollowUpPlan, Message, MessageStatus, PlanEnrollment, PlanStep

logger = logging.getLogger(__name__)

HORIZON = timedelta(hours=48)
SUBJECT = "plan_enrollment"
# Occurrences looked at per step and scan, counted from the step's start: a daily step's 27 years.
SCAN_LIMIT = 10_000


def occurrences(step: PlanStep, start: date, *, after: datetime, until: datetime) -> Iterator[datetime]:
    """The step's times in (after, until], aware, in the hospital's time zone."""
    tz = timezone.get_default_timezone()
    if step.rrule:
        problem = step.rrule_problem()
        if problem:
            logger.error("plan step %s not materialized: %s", step.pk, problem)
            return
        first = datetime.combine(start, step.time_of_day, tzinfo=tz)
        for at in islice(rrulestr(step.rrule, dtstart=first), SCAN_LIMIT):
            if at > until:
                return
            if at > after:
                yield at
        return
    at = datetime.combine(start + timedelta(days=step.day_offset), step.time_of_day, tzinfo=tz)
    if after < at <= until:
        yield at


def plan_enroll(
    *, event: Event, plan: FollowUpPlan, recipient: Recipient, key: str, start: date, now: datetime
) -> PlanEnrollment:
    """Enrol a patient (the same plan and enrollment id again changes nothing) and materialize
    the first horizon. Steps already past at enrolment are not sent."""
    enrollment, _ = PlanEnrollment.objects.get_or_create(
        plan=plan,
        enrollment_key=key,
        defaults={"recipient": recipient, "event": event, "start_date": start, "materialized_until": now},
    )
    materialize(enrollment, until=now + HORIZON)
    return enrollment


def plan_cancel(*, plan: FollowUpPlan, key: str, reason: str) -> int:
    """Stop an enrollment; its pending reminders are cancelled. Returns how many."""
    enrollment = PlanEnrollment.objects.select_for_update().filter(plan=plan, enrollment_key=key).first()
    if enrollment is None or enrollment.status != EnrollmentStatus.ACTIVE:
        return 0
    enrollment.status = EnrollmentStatus.CANCELLED
    enrollment.save(update_fields=["status"])
    return Message.objects.filter(
        subject_type=SUBJECT, subject_id=str(enrollment.pk), status=MessageStatus.SCHEDULED
    ).update(status=MessageStatus.CANCELLED, status_reason=reason[:255])


def materialize(enrollment: PlanEnrollment, *, until: datetime) -> int:
    """Write the enrollment's occurrences up to `until` as scheduled messages."""
    rows = []
    finite_done = True
    for step in enrollment.plan.steps.select_related("template"):
        for at in occurrences(step, enrollment.start_date, after=enrollment.materialized_until, until=until):
            rows.append(
                Message(
                    event_id=enrollment.event_id,
                    plan_step=step,
                    template=step.template,
                    recipient_id=enrollment.recipient_id,
                    audience="patient",
                    subject_type=SUBJECT,
                    subject_id=str(enrollment.pk),
                    status=MessageStatus.SCHEDULED,
                    due_at=at,
                )
            )
        if _has_more(step, enrollment.start_date, after=until):
            finite_done = False
    Message.objects.bulk_create(rows, ignore_conflicts=True)
    enrollment.materialized_until = until
    if finite_done:
        enrollment.status = EnrollmentStatus.COMPLETED
    enrollment.save(update_fields=["materialized_until", "status"])
    return len(rows)


def _has_more(step: PlanStep, start: date, *, after: datetime) -> bool:
    return next(occurrences(step, start, after=after, until=after + timedelta(days=3660)), None) is not None


def plans_materialize_due(*, now: datetime | None = None, batch: int = 200) -> int:
    """The horizon scan (beat): enrollments whose materialized window ends within the next hour."""
    now = now or timezone.now()
    done = 0
    with transaction.atomic():
        due = (
            PlanEnrollment.objects.select_for_update(skip_locked=True)
            .select_related("plan")
            .filter(status=EnrollmentStatus.ACTIVE, materialized_until__lt=now + HORIZON - timedelta(hours=1))
            .order_by("materialized_until")[:batch]
        )
        for enrollment in due:
            done += materialize(enrollment, until=now + HORIZON)
    return done
