import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db import models
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin
from import_export.forms import SelectableFieldsExportForm

from channels.admin import HistoryRecordAdmin
from channels.models import Channel, Delivery, Recipient
from channels.selectors import deliveries_for_messages
from channels.wording import REASONS, reason_label
from inbox.admin_lists import ValuesListFilter, WholeValueSearch, distinct_values, whole_number

from .admin_broadcasts import RecurringBroadcastForm, recurring_run_check  # and registers the broadcasts' admin
from .admin_funnel import FunnelMixin
from .admin_history import ConfigHistoryAdmin
from .broadcasts import broadcast_delete, broadcast_schedule_sync
from .coverage import CHANNELS, channel_volumes, coverage_matrix
from .forms_scenario import RuleForm, ScenarioForm
from .models import (
    AudiencePolicy,
    ChannelBinding,
    Domain,
    Event,
    FollowUpPlan,
    LinkTarget,
    Message,
    PlanEnrollment,
    PlanStep,
    RecurringBroadcast,
    Rule,
    Scenario,
    Template,
    TestRecipient,
    UpcomingReminder,
    link_warnings,
)
from .preview import TestSendRefused, sample_data_for, template_preview, template_test_send
from .resources import (
    ChannelBindingResource,
    LinkTargetResource,
    RuleResource,
    ScenarioResource,
    TemplateResource,
)
from .selectors import messages_timeline
from .services import reminders_cancel


def timeline_html(entries, **delivery_filter) -> str:
    url = reverse("admin:channels_delivery_changelist")
    query = "&".join(f"{k}={v}" for k, v in delivery_filter.items())
    return render_to_string("admin/scenarios/timeline.html", {"entries": entries, "deliveries_url": f"{url}?{query}"})


class RuleInline(admin.StackedInline):
    model = Rule
    form = RuleForm
    extra = 0
    autocomplete_fields = ["template"]
    # Most of these lists are empty or one line: ten rows each doubled the page.
    formfield_overrides = {models.JSONField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 60})}}
    # 22 fields a rule made a scenario with three rules a page 7,600 px long: who and what, then
    # when (reminders), then the delivery policies folded (opened when one has an error).
    fieldsets = [
        (None, {"fields": ["code", "audience", "template", "enabled", "condition", "default_recipients"]}),
        (
            _("When: reminders"),
            {"fields": ["anchor_field", "offset_minutes", "grace_minutes", "cancel_on", "reschedule_on"]},
        ),
        (
            _("Delivery policies: importance, quiet hours, cap, de-duplication, fallback chain"),
            {
                "classes": ["collapse"],
                "fields": [
                    "importance",
                    "quiet_hours",
                    ("quiet_start", "quiet_end"),
                    ("cap_count", "cap_window_minutes"),
                    "collapse_template",
                    ("dedup_field", "dedup_window_minutes"),
                    "fallback_chain",
                ],
            },
        ),
    ]


class ConsoleExportForm(SelectableFieldsExportForm):
    """The export page's field boxes labelled with the model's own field names in the console's
    language and the file's column beside it ("编码 (code)"); django-import-export 4.4 titles
    the column name ("Is Verification Code")."""

    def _get_field_label(self, resource, field_name: str) -> str:
        field = resource.fields.get(field_name)
        column = field.column_name if field else field_name
        try:
            words = resource._meta.model._meta.get_field(field.attribute if field else field_name).verbose_name
        except FieldDoesNotExist:
            return super()._get_field_label(resource, field_name)
        return f"{capfirst(words)} ({column})"


class ConsoleImportExport(ImportExportMixin):
    """django-import-export's buttons; the exported file named after the console's day (it took
    the UTC date: a file saved at 07:00 in Shanghai was named after the day before)."""

    export_form_class = ConsoleExportForm

    def get_export_filename(self, request, queryset, file_format):
        return f"{self.model.__name__}-{timezone.localdate():%Y-%m-%d}.{file_format.get_extension()}"


@admin.register(Scenario)
class ScenarioAdmin(FunnelMixin, ConsoleImportExport, ConfigHistoryAdmin):
    resource_classes = [ScenarioResource]
    form = ScenarioForm
    # Adds "add a template for this scenario" (its sample data filled in).
    change_form_template = "admin/scenarios/scenario/change_form.html"
    list_display = ["code", "name", "domain", "enabled", "subject_type", "backend_call"]
    list_filter = ["domain", "enabled"]
    search_fields = ["code", "name", "rules__template__code"]
    inlines = [RuleInline]
    history_children = ((Rule, "scenario"),)
    # Adds "coverage matrix"; import-export wraps it with its own buttons.
    change_list_template = "admin/scenarios/scenario/change_list.html"

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        for warning in link_warnings(form.instance):  # saved: the backend may send subjects itself
            messages.warning(request, warning)

    def get_urls(self):
        coverage = path("coverage/", self.admin_site.admin_view(self.coverage_view), name="scenarios_scenario_coverage")
        return [coverage, *super().get_urls()]

    def coverage_view(self, request):
        """Scenarios × audiences × channels, each cell from the delivery records."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        domain = request.GET.get("domain", "")
        volumes = channel_volumes()
        busiest = max((v.total for v in volumes), default=0) or 1
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Coverage matrix"),
            "rows": coverage_matrix(domain=domain),
            "channels": [Channel(c).label for c in CHANNELS],
            "domains": Domain.choices,
            "domain": domain,
            "volumes": [(v, round(v.total * 100 / busiest)) for v in volumes],
        }
        return TemplateResponse(request, "admin/scenarios/coverage.html", context)


class TemplateForm(forms.ModelForm):
    # A new template is in no rule yet, so it has no scenario to take its sample data from: the
    # preview then reported every variable missing. The scenario page's "add a template" fills it.
    sample_scenario = forms.ModelChoiceField(
        queryset=Scenario.objects.all(),
        required=False,
        label=_("sample data from"),
        help_text=_(
            "A new template is in no rule yet: choose the scenario it is for, and its sample data is used "
            "when the box below is empty."
        ),
    )
    sample_data = forms.JSONField(
        label=_("sample data"),
        required=False,
        help_text=_(
            "The payload the preview and the checks render; it starts as the scenario's sample. "
            "A template whose preview shows a problem cannot be saved."
        ),
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
    )

    class Meta:
        model = Template
        fields = [
            "code",
            "name",
            "audience",
            "category",
            "title",
            "body",
            "link",
            "buttons",
            "is_verification_code",
            "critical",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Template.clean's preview check (the import's) runs in ChannelBindingFormSet instead, with
        # the bindings and sample data as submitted, and is said once, in the page's preview.
        self.instance.previewed_as_submitted = True
        if not self.is_bound:
            self.initial["sample_data"] = sample_data_for(self.instance)
            scenario = scenario_by_pk(self.initial.get("sample_scenario"))
            if scenario is not None and not self.initial["sample_data"]:
                self.initial["sample_data"] = scenario.sample_data or {}

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("sample_data") and cleaned.get("sample_scenario") is not None:
            cleaned["sample_data"] = cleaned["sample_scenario"].sample_data or {}
        return cleaned


def scenario_by_pk(value) -> Scenario | None:
    pk = value.pk if isinstance(value, Scenario) else whole_number(str(value or ""))
    return Scenario.objects.filter(pk=pk).first() if pk is not None else None


class ChannelBindingFormSet(BaseInlineFormSet):
    """Checks the template and its bindings together, as they would be saved: every bound
    channel rendered from the sample data and put through that channel's checks."""

    sample_data: dict = {}

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        bindings = [
            form.instance
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.instance.enabled
        ]
        preview = template_preview(template=self.instance, bindings=bindings, data=self.sample_data)
        # The page's preview shows this one, so what it shows is what was refused, said once there.
        self.instance._submitted_preview = preview
        if preview.problems:
            raise ValidationError(_("Not saved: the preview above says what to correct."))


class ChannelBindingInline(admin.TabularInline):
    model = ChannelBinding
    formset = ChannelBindingFormSet
    extra = 0
    # JSON boxes of Django's default width (40 columns each) pushed the table past 1400 px.
    formfield_overrides = {models.JSONField: {"widget": forms.Textarea(attrs={"rows": 4, "cols": 28})}}


@admin.register(Template)
class TemplateAdmin(ConsoleImportExport, ConfigHistoryAdmin):
    resource_classes = [TemplateResource]
    form = TemplateForm
    change_form_template = "admin/scenarios/template/change_form.html"  # adds "preview and test send"
    list_display = ["code", "name", "audience", "category", "link", "channels"]
    list_filter = ["audience", "category", "bindings__channel", "is_verification_code", "critical"]
    search_fields = ["code", "name", "title", "body"]
    inlines = [ChannelBindingInline]
    history_children = ((ChannelBinding, "template"),)
    list_select_related = ["link"]
    readonly_fields = ["preview"]

    @admin.display(description=_("channels"))
    def channels(self, obj):
        return "、".join(b.get_channel_display() for b in obj.bindings.all() if b.enabled) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("bindings")

    def get_formsets_with_inlines(self, request, obj=None):
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            if isinstance(inline, ChannelBindingInline):
                formset.sample_data = self._sample_data(request, obj)
            yield formset, inline

    def _sample_data(self, request, obj) -> dict:
        if request.method == "POST":
            raw = request.POST.get("sample_data", "").strip()
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {}
            data = data if isinstance(data, dict) else {}
            scenario = scenario_by_pk(request.POST.get("sample_scenario"))
            return data or (dict(scenario.sample_data or {}) if scenario is not None else {})
        return sample_data_for(obj) if obj else {}

    @admin.display(description=_("preview"))
    def preview(self, obj):
        # A refused save: the text, sample data and bindings as submitted (ChannelBindingFormSet).
        result = getattr(obj, "_submitted_preview", None)
        if result is None:
            if not obj.pk:
                return "—"
            bindings = list(obj.bindings.filter(enabled=True).select_related("account"))
            result = template_preview(template=obj, bindings=bindings, data=sample_data_for(obj))
        url = reverse("admin:scenarios_template_preview", args=[obj.pk]) if obj.pk else ""
        context = {"preview": result, "preview_url": url, "unsaved": hasattr(obj, "_submitted_preview")}
        return render_to_string("admin/scenarios/template/preview_panel.html", context)

    def get_urls(self):
        urls = [
            path(
                "<int:pk>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="scenarios_template_preview",
            )
        ]
        return urls + super().get_urls()

    def preview_view(self, request, pk: int):
        """Preview from an editable payload, and a test send to a chosen person."""
        template = get_object_or_404(Template, pk=pk)
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        bindings = list(template.bindings.filter(enabled=True).select_related("account"))
        raw = request.POST.get("sample_data") if request.method == "POST" else None
        data, data_error = sample_data_for(template), ""
        if raw is not None:
            try:
                data = json.loads(raw or "{}")
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                data_error = _("The sample data is not a JSON object: %(error)s") % {"error": err}
        sent, send_error = [], ""
        ids = [int(i) for i in request.GET.getlist("sent") if i.isdigit()]
        if request.method == "POST" and "_test_send" in request.POST and not data_error:
            if not self.has_change_permission(request, template):
                raise PermissionDenied
            try:
                deliveries = template_test_send(
                    template=template,
                    data=data,
                    external_id=request.POST.get("external_id", "").strip(),
                    channels=request.POST.getlist("channels"),
                )
            except (TestSendRefused, KeyError) as err:
                send_error = str(err)
            else:
                query = "&".join(f"sent={d.pk}" for d in deliveries)
                return redirect(f"{request.path}?{query}")
        if ids:
            sent = [test_send_outcome(d) for d in Delivery.objects.filter(pk__in=ids).order_by("pk")]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": template,
            "title": _("Preview and test send: %(code)s") % {"code": template.code},
            "preview": template_preview(template=template, bindings=bindings, data=data),
            "sample_data": json.dumps(data, ensure_ascii=False, indent=2),
            "data_error": data_error,
            "bindings": bindings,
            "chosen": request.POST.getlist("channels") or [b.channel for b in bindings],
            "external_id": request.POST.get("external_id", ""),
            "send_error": send_error,
            "sent": sent,
            "waiting": any(d.status in ("queued", "sending") for d in sent),
            "can_send": self.has_change_permission(request, template),
            "test_people": TestRecipient.objects.filter(audience=template.audience).order_by("external_id"),
        }
        return TemplateResponse(request, "admin/scenarios/template/preview.html", context)


ADDRESS_REASONS = {"no_address", "no_consent"}


def test_send_outcome(delivery: Delivery) -> Delivery:
    """A test send's result in the reader's words: our own reason codes by their label (the
    stored words are the engine's English, "The recipient has no address on sms."), a provider's
    words as they came; and, when the test recipient lacks the channel's address, where to add it."""
    code = delivery.last_error_code
    if code in REASONS:
        delivery.outcome = reason_label(code)
    else:
        delivery.outcome = " ".join(part for part in (code, delivery.last_error_message) if part)
    delivery.needs_address = code in ADDRESS_REASONS
    delivery.recipient_url = (
        reverse("admin:channels_recipient_change", args=[delivery.recipient_id]) if delivery.recipient_id else ""
    )
    return delivery


@admin.register(LinkTarget)
class LinkTargetAdmin(ConsoleImportExport, ConfigHistoryAdmin):
    resource_classes = [LinkTargetResource]
    list_display = [
        "code",
        "name",
        "route",
        "working",
        "mini_program_page",
        "h5_url",
        "patient_app_url",
        "doctor_app_url",
        "admin_url",
    ]
    list_filter = ["working"]
    search_fields = ["code", "name", "route"]


@admin.register(Rule)
class RuleAdmin(ConsoleImportExport, ConfigHistoryAdmin):
    resource_classes = [RuleResource]
    form = RuleForm
    list_display = [
        "__str__",
        "audience",
        "template",
        "enabled",
        "importance",
        "quiet_hours",
        "cap_count",
        "anchor_field",
        "offset_minutes",
    ]
    list_filter = ["audience", "enabled", "importance", "quiet_hours", "scenario__domain"]
    search_fields = ["code", "scenario__code", "template__code"]
    autocomplete_fields = ["template", "scenario"]


@admin.register(AudiencePolicy)
class AudiencePolicyAdmin(ConfigHistoryAdmin):
    """Quiet hours per audience, in the hospital's time zone (docs/operations.md)."""

    list_display = ["audience", "quiet_start", "quiet_end"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["rule", "template", "recipient", "status", "status_reason", "due_at", "dispatched_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class ClientFilter(ValuesListFilter):
    """The clients that reported events, read off the idempotency index (not the table)."""

    title = _("client")
    parameter_name = field_name = "client"

    def values(self, request, model_admin):
        return [(client, client) for client in distinct_values(Event, "client")]


@admin.register(Event)
class EventAdmin(WholeValueSearch, HistoryRecordAdmin):
    list_display = ["id", "scenario", "client", "subject_type", "subject_id", "occurred_at", "received_at"]
    list_filter = ["scenario__domain", "scenario", ClientFilter, "received_at"]
    search_help_text = _(
        "An event id, an idempotency key, a subject id (an order or consultation number), or a scenario code."
    )
    # request_hash is the replay check's own (no one reads it); the rest is the record as received.
    readonly_fields = [f.name for f in Event._meta.fields if f.name != "request_hash"] + ["timeline"]
    exclude = ["request_hash"]
    inlines = [MessageInline]

    def search_match(self, term):
        match = Q(client__in=distinct_values(Event, "client"), idempotency_key=term)
        match |= Q(subject_type__in=distinct_values(Event, "subject_type"), subject_id=term)
        match |= Q(scenario_id__in=list(Scenario.objects.filter(code=term).values_list("pk", flat=True)))
        if (number := whole_number(term)) is not None:
            match |= Q(pk=number)
        return match

    @admin.display(description=_("timeline"))
    def timeline(self, obj):
        messages = list(obj.messages.select_related("template", "recipient"))
        return timeline_html(messages_timeline(messages=messages, event=obj), event_ref=obj.pk)

    def record_title(self, obj):
        return _("Event #%(id)s: %(scenario)s") % {"id": obj.pk, "scenario": obj.scenario}


@admin.register(Message)
class MessageAdmin(WholeValueSearch, HistoryRecordAdmin):
    list_display = ["id", "template", "audience", "recipient", "status", "due_at", "dispatched_at"]
    list_filter = ["status", "audience", "template__category", "due_at"]
    search_help_text = _("A message or event id, a template code, or a recipient's external id.")
    list_select_related = ["template", "recipient"]
    readonly_fields = [f.name for f in Message._meta.fields] + ["deliveries", "timeline"]

    def search_match(self, term):
        match = Q(template_id__in=list(Template.objects.filter(code=term).values_list("pk", flat=True)))
        match |= Q(recipient_id__in=list(Recipient.objects.filter(external_id=term).values_list("pk", flat=True)))
        if (number := whole_number(term)) is not None:
            match |= Q(pk=number) | Q(event_id=number)
        return match

    @admin.display(description=_("timeline"))
    def timeline(self, obj):
        return timeline_html(messages_timeline(messages=[obj]), message_ref=obj.pk)

    @admin.display(description=_("deliveries"))
    def deliveries(self, obj):
        return (
            "；".join(
                f"{d.get_channel_display()}：{d.get_status_display()}"
                + (f"（{reason_label(d.last_error_code)}）" if d.last_error_code else "")
                for d in deliveries_for_messages(message_refs=[obj.pk])
            )
            or "—"
        )

    def record_title(self, obj):
        return _("Message #%(id)s: %(template)s to %(audience)s %(recipient)s") % {
            "id": obj.pk,
            "template": obj.template.name,
            "audience": obj.get_audience_display(),
            "recipient": obj.recipient.external_id,
        }


@admin.register(UpcomingReminder)
class UpcomingReminderAdmin(HistoryRecordAdmin):
    list_display = ["due_at", "template", "audience", "recipient", "subject_type", "subject_id", "scenario"]
    list_filter = ["event__scenario", "audience", "template", "due_at"]
    search_fields = ["subject_id", "recipient__external_id", "template__code", "=event__id"]
    date_hierarchy = "due_at"
    ordering = ["due_at"]
    list_select_related = ["template", "recipient", "event__scenario"]
    readonly_fields = [f.name for f in Message._meta.fields]
    actions = ["cancel_reminders"]
    show_full_result_count = False

    @admin.display(description=_("scenario"), ordering="event__scenario__code")
    def scenario(self, obj):
        return obj.event.scenario.code

    @admin.action(description=_("Cancel the selected reminders"), permissions=["cancel"])
    def cancel_reminders(self, request, queryset):
        n = reminders_cancel(
            message_ids=list(queryset.values_list("pk", flat=True)), reason=f"cancelled in the admin by {request.user}"
        )
        self.message_user(request, _("%(n)d reminders cancelled.") % {"n": n})

    def has_cancel_permission(self, request):
        return request.user.has_perm("scenarios.cancel_reminder")

    def record_title(self, obj):
        return _("Upcoming reminder #%(id)s: %(template)s") % {"id": obj.pk, "template": obj.template.name}


@admin.register(RecurringBroadcast)
class RecurringBroadcastAdmin(ConfigHistoryAdmin):
    # Beside the other broadcasts' admin: refused at save when a run would be; and whether one would be now.
    form = RecurringBroadcastForm
    run_check = recurring_run_check

    list_display = ["name", "scenario", "crontab", "enabled", "last_run", "failure", "run_check"]
    readonly_fields = ["failure"]
    # periodic_task is nullable, so Django's automatic join would leave it to a query per row.
    list_select_related = ["scenario", "crontab", "periodic_task"]
    list_filter = ["enabled", "scenario"]
    search_fields = ["name", "scenario__code"]
    # A plain list, not autocomplete: the form leaves out the scenarios a broadcast cannot send.

    @admin.display(description=_("last run"))
    def last_run(self, obj):
        return obj.periodic_task.last_run_at if obj.periodic_task else None

    @admin.display(description=_("last failure"))
    def failure(self, obj):
        if not obj.last_failure:
            return "—"
        at = formats.localize(timezone.localtime(obj.last_failure_at)) if obj.last_failure_at else ""
        return format_html('<span style="color: #ba2121">{} {}</span>', at, obj.last_failure)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        broadcast_schedule_sync(broadcast=obj)

    def delete_model(self, request, obj):
        broadcast_delete(broadcast=obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            broadcast_delete(broadcast=obj)


class PlanStepInline(admin.TabularInline):
    model = PlanStep
    extra = 0
    autocomplete_fields = ["template"]


@admin.register(FollowUpPlan)
class FollowUpPlanAdmin(ConfigHistoryAdmin):
    list_display = ["code", "name", "enabled"]
    search_fields = ["code", "name"]
    inlines = [PlanStepInline]
    history_children = ((PlanStep, "plan"),)


@admin.register(PlanEnrollment)
class PlanEnrollmentAdmin(HistoryRecordAdmin):
    list_display = ["plan", "enrollment_key", "recipient", "start_date", "status", "materialized_until"]
    list_filter = ["plan", "status"]
    search_fields = ["enrollment_key", "recipient__external_id"]
    list_select_related = ["plan", "recipient"]
    readonly_fields = [f.name for f in PlanEnrollment._meta.fields]


@admin.register(ChannelBinding)
class ChannelBindingAdmin(ConsoleImportExport, ConfigHistoryAdmin):
    """Bindings are edited on their template's page; this list is for import, export and search."""

    resource_classes = [ChannelBindingResource]
    list_display = ["template", "channel", "enabled", "account", "external_template_id"]
    list_filter = ["channel", "enabled", "template__audience"]
    search_fields = ["template__code", "external_template_id"]
    list_select_related = ["template", "account"]
    autocomplete_fields = ["template"]


@admin.register(TestRecipient)
class TestRecipientAdmin(admin.ModelAdmin):
    """The only people the console's test sends reach."""

    list_display = ["audience", "external_id", "name", "notes"]
    list_filter = ["audience"]
    search_fields = ["external_id", "name"]
