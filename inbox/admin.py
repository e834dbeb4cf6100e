from django.contrib import admin

from .models import InboxActionPress, InboxMessage


@admin.register(InboxMessage)
class InboxMessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "audience",
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
        "audience",
        "category",
        ("read_at", admin.EmptyFieldListFilter),
        ("archived_at", admin.EmptyFieldListFilter),
        "created_at",
    ]
    search_fields = ["recipient_id", "title", "template_code"]
    readonly_fields = [f.name for f in InboxMessage._meta.fields]
    show_full_result_count = False


@admin.register(InboxActionPress)
class InboxActionPressAdmin(admin.ModelAdmin):
    """Which buttons people press: read-only, as the apps reported them."""

    list_display = ["id", "message", "key", "platform", "pressed_at"]
    list_filter = ["key", "platform", "pressed_at"]
    list_select_related = ["message"]
    search_fields = ["message__recipient_id", "message__template_code"]
    readonly_fields = ["message", "key", "platform", "pressed_at"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
