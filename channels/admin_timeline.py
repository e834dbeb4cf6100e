"""A delivery's timeline and the provider receipts, in the console (beside channels/admin.py)."""

import json

from django.contrib import admin
from django.db.models import Q
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from inbox.admin_lists import ViewOnly, WholeValueSearch, whole_number

from .masking import mask_phone
from .models import QUIET, DeliveryStatus, DeliveryStatusChange, ProviderReceipt


class DeliveryStatusChangeInline(admin.TabularInline):
    """Every status the delivery went through, with when and why; late reports kept, unapplied."""

    model = DeliveryStatusChange
    extra = 0
    can_delete = False
    fields = ["at", "status", "source", "applied", "code", "detail", "webhook"]
    readonly_fields = fields
    verbose_name_plural = _("timeline")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("status webhook"))
    def webhook(self, obj):
        """What the status webhooks made of the row: a row's `published_at` alone would show a time
        for changes no webhook is ever sent for (QUIET ones, late reports: born published)."""
        if obj.status in QUIET:
            return _("none: on its way, not an outcome")
        if not obj.applied:
            return _("none: a late report, not applied")
        if obj.published_at is None:
            return _("waiting to be published")
        return formats.localize(timezone.localtime(obj.published_at))


def _status_words(status: str) -> str:
    """A reported status (one of the delivery statuses) as the console says it; else as it came."""
    return DeliveryStatus(status).label if status in DeliveryStatus.values else status


class ReportedStatusFilter(admin.SimpleListFilter):
    """The statuses receipts report, in words (a fixed list: no DISTINCT over the receipts)."""

    title = _("reported status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        reported = (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.READ, DeliveryStatus.CLICKED)
        return [(s.value, s.label) for s in reported]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(ProviderReceipt)
class ProviderReceiptAdmin(ViewOnly, WholeValueSearch, admin.ModelAdmin):
    """What providers reported, matched or not; refused calls with the reason."""

    list_display = ["received_at", "provider", "account", "reported", "code", "outcome", "delivery", "reference"]
    list_filter = ["outcome", "provider", ReportedStatusFilter, "received_at"]
    search_help_text = _("A provider's message id, our key, or a delivery id.")
    list_select_related = ["account"]
    # The reported status in words (as in the list), not the raw word the provider's answer held.
    readonly_fields = [
        "reported" if f.name == "status" else f.name for f in ProviderReceipt._meta.fields if f.name != "raw"
    ] + ["shown_raw"]
    exclude = ["raw", "status"]
    # No date_hierarchy: its year/month links read every row's date at each page (a DISTINCT over the table).

    def search_match(self, term):
        match = Q(provider_message_id=term) | Q(our_key=term)
        if (number := whole_number(term)) is not None:
            match |= Q(delivery_id=number)
        return match

    @admin.display(description=_("reported status"), ordering="status")
    def reported(self, obj):
        return _status_words(obj.status) or "—"

    @admin.display(description=_("provider message id or our key"))
    def reference(self, obj):
        return obj.provider_message_id or obj.our_key or "—"

    @admin.display(description=_("raw"))
    def shown_raw(self, obj):
        raw = dict(obj.raw or {})
        for key in ("phone_number", "mobile", "PhoneNumber"):
            if key in raw:
                raw[key] = mask_phone(str(raw[key]))
        return format_html("<pre>{}</pre>", json.dumps(raw, ensure_ascii=False, indent=2, default=str))
