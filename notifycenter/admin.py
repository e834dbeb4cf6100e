from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from inbox.admin_audit import log_action_change
from inbox.admin_lists import LargeTablePaginator, RecordOnly, ViewOnly

from . import admin_beat  # noqa: F401 (django-celery-beat's pages, registered in the console's words)
from .auth import api_keys_forget
from .models import (
    SCOPES,
    WEBHOOK_EVENTS,
    ApiKey,
    PersonRequest,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStatus,
    url_not_internal,
    url_without_credentials,
)
from .webhooks import send_soon, webhook_replay

# What each scope lets a key do, in the console's language; the code (what create_api_key takes) beside it.
SCOPE_WORDS = {
    "events": _("report events, read their trace, broadcasts"),
    "recipients": _("the recipient directory and preferences"),
    "otp": _("send and check verification codes"),
    "inbox-read": _("read a person's station inbox"),
    "webhooks": _("register status webhooks"),
}


class ApiKeyForm(forms.ModelForm):
    """Scopes as boxes to tick (a JSON box took any word, which no request then matched)."""

    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        required=False,
        choices=[(s, f"{SCOPE_WORDS[s]} ({s})" if s in SCOPE_WORDS else s) for s in SCOPES],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiKey
        fields = ["client", "name", "scopes", "rate_limit_per_minute", "is_active"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["client", "name", "prefix", "scopes", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active", "client"]
    search_fields = ["client", "name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["client", "name", "prefix", "scopes", "rate_limit_per_minute", "is_active", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        # A key is shown only once, when made: `manage.py create_api_key`.
        return False

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = list(queryset.filter(is_active=True))
        queryset.update(is_active=False)
        api_keys_forget()  # an update sends no signal; other processes refuse it within 2 s
        log_action_change(self, request, revoked, "is_active")  # who revoked it, in the key's history

    actions = ["revoke"]


# What each webhook event means, in the console's language; the code (what the backend receives) beside it.
EVENT_WORDS = {
    "delivery.sent": _("handed to the provider"),
    "delivery.delivered": _("delivered"),
    "delivery.undelivered": _("not delivered"),
    "delivery.failed": _("failed"),
    "delivery.read": _("read"),
    "delivery.clicked": _("link followed"),
    "message.settled": _("message settled: every channel ended"),
}


def _event_label(event: str) -> str:
    return f"{EVENT_WORDS[event]} ({event})" if event in EVENT_WORDS else event


def _event_choices() -> list[tuple[str, str]]:
    return [(e, _event_label(e)) for e in WEBHOOK_EVENTS]


class EventFilter(admin.SimpleListFilter):
    """The webhook events in words (a fixed list: no DISTINCT over the deliveries)."""

    title = _("event")
    parameter_name = "event"

    def lookups(self, request, model_admin):
        return _event_choices()

    def queryset(self, request, queryset):
        return queryset.filter(event=self.value()) if self.value() else queryset


class WebhookEndpointForm(forms.ModelForm):
    """The secret is typed in, kept encrypted and never shown again; empty keeps the current one."""

    secret = forms.CharField(
        label=_("signing secret"), required=False, min_length=16, widget=forms.PasswordInput(render_value=False)
    )
    url = forms.URLField(
        label=_("URL"), max_length=500, assume_scheme="https", validators=[url_without_credentials, url_not_internal]
    )
    events = forms.MultipleChoiceField(label=_("events"), choices=_event_choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["client", "url", "events", "is_active"]
        help_texts = {"client": _("The client name of the API key whose events these are (manage.py create_api_key).")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The clients that hold API keys, as a list to pick from (and the endpoint's own, kept).
        clients = sorted(set(ApiKey.objects.values_list("client", flat=True)) | {self.instance.client} - {""})
        self.fields["client"] = forms.ChoiceField(
            label=self.fields["client"].label,
            help_text=self.fields["client"].help_text,
            choices=[("", "---------"), *((c, c) for c in clients)],
        )

    def clean(self):
        cleaned = super().clean()
        if not self.instance.secret and not cleaned.get("secret"):
            self.add_error("secret", _("A new endpoint needs a signing secret."))
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("secret"):
            self.instance.signing = {"secret": self.cleaned_data["secret"]}
        return super().save(commit)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["client", "url", "events", "is_active", "created_at"]
    list_filter = ["is_active", "client"]
    search_fields = ["client", "url"]


@admin.register(PersonRequest)
class PersonRequestAdmin(RecordOnly, admin.ModelAdmin):
    """The record of personal-information requests (PIPL), read only: rows are written by
    `manage.py person` alone and never changed or deleted here."""

    list_display = ["at", "action", "asked", "entries_found", "requested_by", "run_by"]
    list_filter = ["action", "at"]
    search_fields = ["asked", "requested_by", "run_by"]
    fields = ["at", "action", "asked", "entries_found", "requested_by", "run_by"]
    readonly_fields = fields

    @admin.display(description=_("directory entries"))
    def entries_found(self, obj):
        return ", ".join(obj.entries) or "—"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ViewOnly, admin.ModelAdmin):
    """Each event sent to each endpoint, with every answer; a failed one can be replayed."""

    list_display = [
        "created_at",
        "event_words",
        "event_id",
        "endpoint",
        "status",
        "attempts",
        "last_answer",
        "next_try",
    ]
    list_filter = ["status", EventFilter, "endpoint", "created_at"]
    # Whole values ("=" was UPPER(…) = UPPER(…), "subject" a substring). Neither column has an
    # index of its own (each would cost every webhook written): a search reads the table.
    search_fields = ["event_id__exact", "subject__exact"]
    search_help_text = _("A webhook event id (evt_…) or a subject (d:<delivery id>, m:<message id>).")
    list_select_related = ["endpoint"]
    show_full_result_count = False
    paginator = LargeTablePaginator
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["replay"]

    @admin.display(description=_("event"), ordering="event")
    def event_words(self, obj):
        return _event_label(obj.event)

    @admin.display(description=_("next try at"), ordering="next_try_at")
    def next_try(self, obj):
        # Only a pending one will be tried again; the column still holds the last schedule.
        return obj.next_try_at if obj.status == WebhookStatus.PENDING else "—"

    @admin.display(description=_("last answer"))
    def last_answer(self, obj):
        if not obj.answers:
            return "—"
        last = obj.answers[-1]
        return f"{last.get('status') or _('no answer')} {last.get('body', '')[:60]}"

    @admin.action(description=_("Replay the selected webhook deliveries"), permissions=["replay"])
    def replay(self, request, queryset):
        replayed = list(queryset.select_related(None).only("pk", "event", "event_id"))  # not the payloads, answers
        count = webhook_replay(ids=[row.pk for row in replayed])
        send_soon()
        log_action_change(self, request, replayed, "status", "next_try_at")
        self.message_user(request, _("%(count)d webhook deliveries will be sent again.") % {"count": count})

    def has_replay_permission(self, request):
        return request.user.has_perm("notifycenter.replay_webhookdelivery")


# Django keeps a permission's name as written when it was made, in English ("Can add log entry");
# the group and user pages show them in the console's language: the action and the model's own
# name, or our own permissions' names through the catalog.
PERMISSION_ACTIONS = {
    "add": _("Can add %(model)s"),
    "change": _("Can change %(model)s"),
    "delete": _("Can delete %(model)s"),
    "view": _("Can view %(model)s"),
}


def permission_label(permission) -> str:
    model = permission.content_type.model_class()
    if model is None:
        return str(permission)
    app = apps.get_app_config(permission.content_type.app_label).verbose_name
    action, _sep, rest = permission.codename.partition("_")
    if action in PERMISSION_ACTIONS and rest == model._meta.model_name:
        words = PERMISSION_ACTIONS[action] % {"model": model._meta.verbose_name}
    else:
        words = gettext(permission.name)
    return f"{app} | {model._meta.verbose_name} | {words}"


# The groups notifycenter/groups.py makes, in the console's language (their stored names stay English).
GROUP_WORDS = {
    "operations editor": _("operations editor"),
    "operations viewer": _("operations viewer"),
    "channel admin": _("channel admin"),
}


def group_label(group) -> str:
    words = GROUP_WORDS.get(group.name)
    return f"{words} ({group.name})" if words else group.name


class PermissionLabels:
    """The permissions' boxes of a group's and a user's page, labelled by permission_label; the
    groups' by their names in the console's language."""

    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name in ("permissions", "user_permissions") and field is not None:
            field.label_from_instance = permission_label
        if db_field.name == "groups" and field is not None:
            field.label_from_instance = group_label
        return field


admin.site.unregister(Group)
admin.site.unregister(User)


@admin.register(Group)
class OpsGroupAdmin(PermissionLabels, GroupAdmin):
    list_display = ["name", "words"]

    @admin.display(description=_("in words"))
    def words(self, obj):
        return GROUP_WORDS.get(obj.name, "")


@admin.register(User)
class OpsUserAdmin(PermissionLabels, UserAdmin):
    def save_model(self, request, obj, form, change):
        # A login made in the console is for the console: without staff status it could not sign
        # in, and the login page only said the account was wrong (a walkthrough's first stumble).
        if not change:
            obj.is_staff = True
        super().save_model(request, obj, form, change)
