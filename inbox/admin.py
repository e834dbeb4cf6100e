from django.contrib import admin
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .admin_lists import ValuesListFilter, ViewOnly, WholeValueSearch, distinct_values
from .models import InboxActionPress, InboxMessage

# The audiences as the console names them (the same words as the directory's, channels.models.Audience).
AUDIENCES = {
    "patient": _("Patient"),
    "doctor": _("Doctor"),
    "pharmacist": _("Pharmacist"),
    "operations": _("Operations staff"),
}


class AudienceFilter(ValuesListFilter):
    """The audiences holding messages, read off the owners' index (not the table)."""

    title = _("audience")
    parameter_name = field_name = "audience"

    def values(self, request, model_admin):
        audiences = distinct_values(InboxMessage, "audience", where="deleted_at IS NULL")
        return [(a, AUDIENCES.get(a, a)) for a in audiences]


@admin.register(InboxMessage)
class InboxMessageAdmin(WholeValueSearch, admin.ModelAdmin):
    list_display = [
        "id",
        "audience_label",
        "recipient_id",
        "category",
        "title",
        "created_at",
        "seen_at",
        "read_at",
        "archived_at",
        "deleted_at",
    ]
    list_filter = [
        AudienceFilter,
        "category",
        ("read_at", admin.EmptyFieldListFilter),
        ("archived_at", admin.EmptyFieldListFilter),
        "created_at",
    ]
    # A person's messages through the owners' index (audience, recipient id): their external id, whole.
    search_help_text = _("A recipient's external id.")
    readonly_fields = [f.name for f in InboxMessage._meta.fields]

    @admin.display(description=_("audience"), ordering="audience")
    def audience_label(self, obj):
        return AUDIENCES.get(obj.audience, obj.audience)

    def search_match(self, term):
        return Q(audience__in=distinct_values(InboxMessage, "audience", where="deleted_at IS NULL"), recipient_id=term)


@admin.register(InboxActionPress)
class InboxActionPressAdmin(ViewOnly, admin.ModelAdmin):
    """Which buttons people press: read-only, as the apps reported them."""

    list_display = ["id", "message", "key", "platform", "pressed_at"]
    list_filter = ["key", "platform", "pressed_at"]
    list_select_related = ["message"]
    search_fields = ["message__recipient_id", "message__template_code"]
    readonly_fields = ["message", "key", "platform", "pressed_at"]
    show_full_result_count = False
