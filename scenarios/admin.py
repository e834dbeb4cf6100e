from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from channels.selectors import deliveries_for_messages

from .broadcasts import broadcast_delete, broadcast_schedule_sync
from .models import (
    ChannelBinding,
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
    UpcomingReminder,
)
from .services import reminders_cancel


class RuleInline(admin.StackedInline):
    model = Rule
    extra = 0
    autocomplete_fields = ["template"]


@admin.register(Scenario)
class ScenarioAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "domain", "enabled", "subject_type", "backend_call"]
    list_filter = ["domain", "enabled"]
    search_fields = ["code", "name", "rules__template__code"]
    inlines = [RuleInline]


class ChannelBindingInline(admin.TabularInline):
    model = ChannelBinding
    extra = 0


@admin.register(Template)
class TemplateAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "audience", "category", "link", "channels"]
    list_filter = ["audience", "category", "bindings__channel"]
    search_fields = ["code", "name", "title", "body"]
    inlines = [ChannelBindingInline]
    list_select_related = ["link"]

    @admin.display(description=_("channels"))
    def channels(self, obj):
        return ", ".join(b.channel for b in obj.bindings.all() if b.enabled)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("bindings")


@admin.register(LinkTarget)
class LinkTargetAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "route", "working", "mini_program_page", "h5_url", "app_url"]
    list_filter = ["working"]
    search_fields = ["code", "name", "route"]


@admin.register(Rule)
class RuleAdmin(SimpleHistoryAdmin):
    list_display = ["__str__", "audience", "template", "enabled", "anchor_field", "offset_minutes"]
    list_filter = ["audience", "enabled", "scenario__domain"]
    search_fields = ["code", "scenario__code", "template__code"]
    autocomplete_fields = ["template", "scenario"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["rule", "template", "recipient", "status", "status_reason", "due_at", "dispatched_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "scenario", "client", "subject_type", "subject_id", "occurred_at", "received_at"]
    list_filter = ["scenario__domain", "scenario", "client", "received_at"]
    search_fields = ["=id", "idempotency_key", "subject_id", "scenario__code"]
    readonly_fields = [f.name for f in Event._meta.fields]
    inlines = [MessageInline]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "template", "audience", "recipient", "status", "due_at", "dispatched_at"]
    list_filter = ["status", "audience", "template__category", "due_at"]
    search_fields = ["=id", "template__code", "recipient__external_id", "subject_id"]
    list_select_related = ["template", "recipient"]
    readonly_fields = [f.name for f in Message._meta.fields] + ["deliveries"]
    show_full_result_count = False

    @admin.display(description=_("deliveries"))
    def deliveries(self, obj):
        return (
            ", ".join(
                f"{d.channel}: {d.get_status_display()}{f' ({d.last_error_code})' if d.last_error_code else ''}"
                for d in deliveries_for_messages(message_refs=[obj.pk])
            )
            or "—"
        )

    def has_add_permission(self, request):
        return False


@admin.register(UpcomingReminder)
class UpcomingReminderAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RecurringBroadcast)
class RecurringBroadcastAdmin(SimpleHistoryAdmin):
    list_display = ["name", "scenario", "crontab", "enabled", "last_run"]
    # periodic_task is nullable, so Django's automatic join would leave it to a query per row.
    list_select_related = ["scenario", "crontab", "periodic_task"]
    list_filter = ["enabled", "scenario"]
    search_fields = ["name", "scenario__code"]
    autocomplete_fields = ["scenario"]

    @admin.display(description=_("last run"))
    def last_run(self, obj):
        return obj.periodic_task.last_run_at if obj.periodic_task else None

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
class FollowUpPlanAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "enabled"]
    search_fields = ["code", "name"]
    inlines = [PlanStepInline]


@admin.register(PlanEnrollment)
class PlanEnrollmentAdmin(admin.ModelAdmin):
    list_display = ["plan", "enrollment_key", "recipient", "start_date", "status", "materialized_until"]
    list_filter = ["plan", "status"]
    search_fields = ["enrollment_key", "recipient__external_id"]
    list_select_related = ["plan", "recipient"]
    readonly_fields = [f.name for f in PlanEnrollment._meta.fields]

    def has_add_permission(self, request):
        return False
