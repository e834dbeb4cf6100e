from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from .models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["client", "name", "prefix", "scopes", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active", "client"]
    search_fields = ["client", "name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["client", "name", "prefix", "scopes", "rate_limit_per_minute", "is_active", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        # A key is shown only once, when made: `manage.py create_api_key`.
        return False

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        queryset.update(is_active=False)

    actions = ["revoke"]
