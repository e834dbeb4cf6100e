"""Broadcasts to large audiences in the admin: made from an uploaded list (text or CSV, one id a
line, the first column) or a directory segment; progress read-only; cancel and resume."""

import csv
import io

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from channels.models import Channel
from inbox.admin_audit import log_action_change

from .audiences import LIST_MAX
from .broadcasts import recurring_broadcast_problems, schedule_problem
from .fanout import OPEN, broadcast_cancel, broadcast_create, broadcast_enqueue, broadcast_problems
from .models import Broadcast, BroadcastSource, RecurringBroadcast, Scenario
from .preview import render_problem

UPLOAD_MAX_BYTES = 4 * 1024 * 1024

# `done` and `failed` count people whose message was or was not written (inbox row stored,
# provider message queued); a provider message that fails later is its delivery's status.
COUNT_LABELS = {"done": _("written"), "failed": _("not written")}
COUNT_HELP = {
    "done": _("People whose message was written: stored in the inbox, or queued for the chosen channels."),
    "failed": _(
        "People whose message could not be written (given up after errors). SMS or pushes that fail "
        "later are not counted here: see the deliveries."
    ),
}


def ids_from_text(text: str) -> list[str]:
    """Ids from pasted text or a CSV file: the first column of each line, blank lines skipped; a
    header line named id/external_id/用户ID is skipped too."""
    ids = []
    for n, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or not row[0].strip():
            continue
        value = row[0].strip().lstrip("\ufeff")
        if n == 0 and value.lower() in ("id", "external_id", "用户id"):
            continue
        ids.append(value)
    return ids


class BroadcastForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        label=_("channels"), choices=Channel.choices, initial=["inbox"], widget=forms.CheckboxSelectMultiple
    )
    ids_text = forms.CharField(
        label=_("external ids"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("One id a line (or the first column of CSV); at most %(max)s.") % {"max": f"{LIST_MAX:,}"},
    )
    ids_file = forms.FileField(
        label=_("or a file of ids"), required=False, help_text=_("Text or CSV, UTF-8; the first column is the id.")
    )
    data = forms.JSONField(
        label=_("data"), required=False, initial=dict, help_text=_("What the template renders with.")
    )

    class Meta:
        model = Broadcast
        fields = ["name", "template", "channels", "importance", "source", "segment_channel", "data"]
        # The progress page's words for the counts: what was written, not what the providers did.
        labels = {"done": COUNT_LABELS["done"], "failed": COUNT_LABELS["failed"]}
        help_texts = {"done": COUNT_HELP["done"], "failed": COUNT_HELP["failed"]}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "template" in self.fields:  # a verification code goes to one person at a time, never broadcast
            self.fields["template"].queryset = self.fields["template"].queryset.filter(is_verification_code=False)

    def clean(self):
        cleaned = super().clean()
        ids = ids_from_text(cleaned.get("ids_text") or "")
        upload = cleaned.get("ids_file")
        if upload is not None:
            if upload.size > UPLOAD_MAX_BYTES:
                raise forms.ValidationError({"ids_file": gettext("The file is larger than 4 MB.")})
            try:
                ids += ids_from_text(upload.read().decode("utf-8-sig"))
            except UnicodeDecodeError:
                raise forms.ValidationError({"ids_file": gettext("The file is not UTF-8 text.")}) from None
        segment = cleaned.get("source") == BroadcastSource.SEGMENT
        cleaned["external_ids"] = [] if segment else ids
        if cleaned.get("template") is None:
            return cleaned
        problems = broadcast_problems(
            template=cleaned["template"],
            channels=cleaned.get("channels") or [],
            data=cleaned.get("data") or {},
            external_ids=cleaned["external_ids"],
            segment=segment,
            segment_channel=cleaned.get("segment_channel") or "",
            importance=cleaned.get("importance") or "",
        )
        for path, words in problems.items():
            head, _, rest = path.partition(".")
            if head == "recipients" and rest:
                line = gettext("Line %(n)s: %(problem)s") % {"n": int(rest) + 1, "problem": words[0]}
                self.add_error("ids_text", line)
            elif head == "recipients":
                self.add_error("ids_text" if not segment else "source", words)
            elif head in ("channels", "data", "importance"):
                self.add_error(head, words)
            elif head == "segment":
                self.add_error("segment_channel", words)
            else:  # the template, and what it renders to
                self.add_error("template", [render_problem(rest, w) if rest else w for w in words])
        return cleaned


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    form = BroadcastForm
    list_display = [
        "name",
        "template_code",
        "audience",
        "status",
        "progress",
        "total",
        "written",
        "skipped",
        "not_written",
        "finished_at",
    ]
    list_filter = ["status", "audience", "source"]
    search_fields = ["name", "template__code"]
    date_hierarchy = "created_at"
    actions = ["cancel_broadcasts", "resume_broadcasts"]
    readonly_progress = [
        "name",
        "template",
        "channel_names",
        "importance",
        "audience",
        "source",
        "segment_channel",
        "data",
        "status",
        "progress",
        "total",
        "done",
        "skipped",
        "failed",
        "last_error",
        "created_by",
        "created_at",
        "started_at",
        "progress_at",
        "finished_at",
    ]

    def get_fields(self, request, obj=None):
        if obj is not None:
            return self.readonly_progress
        return [*self.form.Meta.fields[:5], "ids_text", "ids_file", "segment_channel", "data"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_progress if obj is not None else []

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("template").defer("external_ids")

    @admin.display(description=_("template"), ordering="template__code")
    def template_code(self, obj):
        return obj.template.code

    @admin.display(description=_("channels"))
    def channel_names(self, obj):
        labels = dict(Channel.choices)
        return "、".join(str(labels.get(code, code)) for code in obj.channels)

    @admin.display(description=COUNT_LABELS["done"], ordering="done")
    def written(self, obj):
        return obj.done

    @admin.display(description=COUNT_LABELS["failed"], ordering="failed")
    def not_written(self, obj):
        return obj.failed

    @admin.display(description=_("progress"))
    def progress(self, obj):
        handled = obj.done + obj.skipped + obj.failed
        share = 100 if obj.total == 0 and obj.finished_at else (100 * handled // obj.total if obj.total else 0)
        return format_html('<progress max="100" value="{}" style="width: 5em"></progress> {}%', share, share)

    def save_model(self, request, obj, form, change):
        values = form.cleaned_data
        broadcast, _ = broadcast_create(
            name=values["name"],
            template=values["template"],
            channels=values["channels"],
            data=values.get("data") or {},
            external_ids=values["external_ids"],
            segment=values["source"] == BroadcastSource.SEGMENT,
            segment_channel=values.get("segment_channel") or "",
            importance=values["importance"],
            created_by=request.user.get_username(),
        )
        obj.pk = broadcast.pk
        obj.refresh_from_db()

    def has_change_permission(self, request, obj=None):
        # A broadcast is made once; afterwards its page shows the progress (view only).
        return False if obj is not None else super().has_change_permission(request, obj)

    @admin.action(description=_("Cancel the selected broadcasts"), permissions=["cancel"])
    def cancel_broadcasts(self, request, queryset):
        chosen = list(queryset.select_related(None).only("pk", "name"))  # not the lists of ids
        stopped = [b for b in chosen if broadcast_cancel(broadcast_id=b.pk)]
        log_action_change(self, request, stopped, "status")
        self.message_user(request, gettext("%(n)s broadcasts cancelled.") % {"n": len(stopped)}, messages.SUCCESS)

    def has_cancel_permission(self, request):
        return request.user.has_perm("scenarios.cancel_broadcast")

    @admin.action(description=_("Resume the selected broadcasts"), permissions=["cancel"])
    def resume_broadcasts(self, request, queryset):
        open_ids = list(queryset.filter(status__in=OPEN).values_list("pk", flat=True))
        for pk in open_ids:
            broadcast_enqueue(broadcast_id=pk)
        self.message_user(request, gettext("%(n)s broadcasts handed to a worker.") % {"n": len(open_ids)})


class RecurringBroadcastForm(forms.ModelForm):
    """A recurring broadcast (scenarios/admin.py) whose runs would be refused is refused at save:
    the checks each run's event meets (broadcasts.recurring_broadcast_problems), and a timetable of
    at most once an hour."""

    class Meta:
        model = RecurringBroadcast
        fields = ["name", "scenario", "data", "recipients", "crontab", "enabled"]
        help_texts = {
            "crontab": _("At most once an hour: one minute value, e.g. minute 0, hour 9 (every day at 09:00)."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields.get("scenario")
        if field is not None:  # scenarios with a rule a plain event sends (not only verification codes)
            sendable = Q(rules__enabled=True, rules__template__is_verification_code=False)
            kept = Q(pk=self.instance.scenario_id) if self.instance.scenario_id else Q(pk__in=[])
            field.queryset = Scenario.objects.filter(sendable | kept).distinct()

    def clean(self):
        cleaned = super().clean()
        crontab = cleaned.get("crontab")
        if crontab is not None and (problem := schedule_problem(crontab)):
            self.add_error("crontab", problem)
        if cleaned.get("data") is None and "data" not in self.errors:
            cleaned["data"] = {}  # an emptied box: no data, not JSON null
        scenario = cleaned.get("scenario")
        if scenario is None or "data" in self.errors or "recipients" in self.errors:
            return cleaned
        problems = recurring_broadcast_problems(
            scenario=scenario,
            data=cleaned["data"],
            recipients=cleaned.get("recipients"),
            enabled=cleaned.get("enabled", True),
        )
        for path, words in problems.items():
            head, _, rest = path.partition(".")
            if head == "template":  # template.<code>.<part>: what the data renders
                code, _, part = rest.partition(".")
                self.add_error("data", [f"{code} {render_problem(part, w)}" for w in words])
            else:
                field = head if head in ("scenario", "recipients") else "data"
                self.add_error(field, [f"{path}: {w}" if path != field else w for w in words])
        return cleaned


@admin.display(description=_("next run"))
def recurring_run_check(model_admin, obj) -> str:
    """RecurringBroadcastAdmin's column: whether a run now would be accepted, or why not (a
    scenario or its schema may have changed since the broadcast was saved)."""
    problems = recurring_broadcast_problems(
        scenario=obj.scenario, data=obj.data, recipients=obj.recipients, enabled=obj.enabled
    )
    if not problems:
        return gettext("would send")
    words = "; ".join(f"{path}: {w}" for path, ws in problems.items() for w in ws)
    return format_html(
        '<span style="color: #ba2121">{}</span>', gettext("would be refused: %(problems)s") % {"problems": words}
    )
