"""django-celery-beat's pages in the console's language: its admin classes as it ships them, less
the words its zh_Hans catalog cannot give (a field named in plain English, a column named after a
property, schedules described by cron_descriptor in the process's locale, which is English here).
Operations staff open these pages to pick a recurring broadcast's timetable."""

import re

from cron_descriptor import FormatException, MissingFieldException, Options, WrongArgumentException, get_description
from django.contrib import admin
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

# cron_descriptor takes day and month names from the process's locale (English on our servers).
_NAMES = dict(
    zip(
        ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"],
        strict=True,
    )
) | dict(
    zip(
        [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        [f"{n}月" for n in range(1, 13)],
        strict=True,
    )
)
_NAME = re.compile(r"\b(" + "|".join(_NAMES) + r")\b")


def crontab_words(crontab: CrontabSchedule) -> str:
    """The timetable in words in the reader's language, and its time zone."""
    if not (get_language() or "").startswith("zh"):
        return crontab.human_readable
    expression = " ".join(
        (crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year, crontab.day_of_week)
    )
    options = Options()
    options.locale_code = "zh_CN"
    options.use_24hour_time_format = True
    try:
        words = _NAME.sub(lambda m: _NAMES[m.group(1)], get_description(expression, options))
    except (MissingFieldException, FormatException, WrongArgumentException):
        words = expression
    return f"{words} {crontab.timezone}"


class TaskNameFilter(admin.AllValuesFieldListFilter):
    """The task field's verbose name is plain English in django-celery-beat (no gettext)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = _("Celery task")


class PeriodicTaskInline(beat.PeriodicTaskInline):
    fields = ("name", "task_name", "args", "kwargs")
    readonly_fields = fields

    @admin.display(description=_("Celery task"))
    def task_name(self, obj):
        return obj.task


class PeriodicTaskAdmin(beat.PeriodicTaskAdmin):
    # beat's own template binds its crontab words with an inline script, which the console's
    # Content-Security-Policy refuses: ours does it from a static file.
    change_form_template = "admin/notifycenter/periodictask_change_form.html"
    list_filter = ["enabled", "one_off", ("task", TaskNameFilter), "start_time", "last_run_at"]

    @admin.display(description=_("timetable"))
    def scheduler(self, obj):
        return obj.scheduler

    @admin.display(description=_("timetable in words"))
    def crontab_translation(self, obj):
        return crontab_words(obj.crontab) if obj.crontab else "—"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # beat's own view fills `readable_crontabs` (what its page shows beside the picked
        # timetable) with English words, after any context given: skip to ModelAdmin's view.
        context = {
            **(extra_context or {}),
            "readable_crontabs": {c.id: crontab_words(c) for c in CrontabSchedule.objects.all()},
            "crontab_help_labels": {"in_words": gettext("timetable in words")},
        }
        return admin.ModelAdmin.changeform_view(self, request, object_id, form_url, context)


class CrontabScheduleAdmin(beat.CrontabScheduleAdmin):
    inlines = [PeriodicTaskInline]
    list_display = ("__str__", "in_words")
    fields = ("in_words", "minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone")
    readonly_fields = ("in_words",)

    @admin.display(description=_("timetable in words"))
    def in_words(self, obj):
        return crontab_words(obj) if obj.pk else "—"


class ClockedScheduleAdmin(beat.ClockedScheduleAdmin):
    inlines = [PeriodicTaskInline]


class SolarScheduleAdmin(beat.SolarScheduleAdmin):
    inlines = [PeriodicTaskInline]


class IntervalScheduleAdmin(beat.IntervalScheduleAdmin):
    inlines = [PeriodicTaskInline]


for model, model_admin in (
    (PeriodicTask, PeriodicTaskAdmin),
    (CrontabSchedule, CrontabScheduleAdmin),
    (ClockedSchedule, ClockedScheduleAdmin),
    (SolarSchedule, SolarScheduleAdmin),
    (IntervalSchedule, IntervalScheduleAdmin),
):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)
