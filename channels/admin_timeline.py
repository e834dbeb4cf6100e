"""A delivery's timeline and the provider receipts, in the console (beside channels/admin.py)."""

from django.contrib import admin
from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _

from .masking import mask_phone
from .models import QUIET, DeliveryStatusChange, ProviderReceipt


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


@admin.register(ProviderReceipt)
class ProviderReceiptAdmin(admin.ModelAdmin):
    """What providers reported, matched or not; refused calls with the reason."""

    list_display = ["received_at", "provider", "account", "status", "code", "outcome", "delivery", "reference"]
    list_filter = ["outcome", "provider", "status", "received_at"]
    search_fields = ["=provider_message_id", "=our_key", "=delivery__id"]
    list_select_related = ["account"]
    readonly_fields = [f.name for f in ProviderReceipt._meta.fields if f.name != "raw"] + ["shown_raw"]
    exclude = ["raw"]
    date_hierarchy = "received_at"

    @admin.display(description=_("message"))
    def reference(self, obj):
        return obj.provider_message_id or obj.our_key or "—"

    @admin.display(description=_("raw"))
    def shown_raw(self, obj):
        raw = dict(obj.raw or {})
        for key in ("phone_number", "mobile", "PhoneNumber"):
            if key in raw:
                raw[key] = mask_phone(str(raw[key]))
        return raw

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
