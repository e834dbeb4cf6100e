from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from channels.selectors import deliveries_for_messages

from .models import ChannelBinding, Event, LinkTarget, Message, Rule, Scenario, Template


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
