from django.contrib import admin

from .models import InboxMessage


@admin.register(InboxMessage)
class InboxMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "audience", "recipient_id", "category", "title", "created_at", "read_at", "deleted_at"]
    list_filter = ["audience", "category", ("read_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["recipient_id", "title", "template_code"]
    readonly_fields = [f.name for f in InboxMessage._meta.fields]
    show_full_result_count = False
