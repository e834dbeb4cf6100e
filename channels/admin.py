from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from inbox.admin_lists import ValuesListFilter, WholeValueSearch, distinct_values, latest_values, whole_number

from .addresses import recipients_matching
from .admin_timeline import DeliveryStatusChangeInline
from .masking import mask_id, mask_phone, mask_secret
from .models import (
    ADDRESS_FIELDS,
    Channel,
    ChannelAccount,
    Delivery,
    DeliveryAttempt,
    OtpCode,
    Preference,
    PreferenceDefault,
    Recipient,
    SubscribeConsent,
    TokenRefresh,
)
from .providers.jpush import push_option_problems, push_options
from .ratelimit import ROBOT_PER_MINUTE
from .services import account_check, deliveries_cancel_ids, deliveries_retry, masked_address
from .wording import REASONS, reason_label


class HistoryRecordAdmin(admin.ModelAdmin):
    """A record of what happened (events, messages, deliveries, attempts): read, never edited or
    deleted in the console; its page is titled by what it is, not "change"."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def record_title(self, obj) -> str:
        return f"{self.model._meta.verbose_name} #{obj.pk}"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = {"title": self.record_title(obj), "subtitle": None} if obj is not None else {}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


def _short_time(moment) -> str:
    """A list's times, short enough for one line: month-day and local time to the second."""
    return timezone.localtime(moment).strftime("%m-%d %H:%M:%S") if moment else "—"


class BlankWhenEmptyJSONField(forms.JSONField):
    """An empty JSON field shows empty, not `null`."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


class SubscribeConsentInline(admin.TabularInline):
    model = SubscribeConsent
    extra = 0


class PreferenceInline(admin.StackedInline):
    model = Preference
    extra = 0
    max_num = 1


@admin.register(PreferenceDefault)
class PreferenceDefaultAdmin(admin.ModelAdmin):
    """What each audience gets until a person says otherwise (docs/operations.md)."""

    list_display = ["audience", "channels", "categories"]


PHONE_FORM = r"^\+?[0-9]{6,20}$"  # as PUT /api/v1/recipients takes it


class RecipientForm(forms.ModelForm):
    """Addresses are write-only: the page shows each masked, a value typed replaces it, a blank
    field keeps it, and "clear" removes it. The fields are not the model's (`new_…`), so a
    stored address is never an initial value sent back to a browser."""

    new_phone = forms.RegexField(PHONE_FORM, label=_("phone"), required=False, max_length=32)
    new_wechat_mini_openid = forms.CharField(label=_("mini-program openid"), required=False, max_length=64)
    new_wechat_oa_openid = forms.CharField(label=_("official-account openid"), required=False, max_length=64)
    new_wechat_unionid = forms.CharField(label=_("WeChat unionid"), required=False, max_length=64)
    new_wecom_userid = forms.CharField(label=_("WeCom user id"), required=False, max_length=64)
    new_push_registration_ids = forms.CharField(
        label=_("push registration ids"), required=False, max_length=650, help_text=_("Comma-separated.")
    )
    clear_addresses = forms.MultipleChoiceField(
        label=_("clear"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[(name, Recipient._meta.get_field(name).verbose_name) for name in ADDRESS_FIELDS],
    )

    class Meta:
        model = Recipient
        fields = ["audience", "external_id", "name", "locale"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ADDRESS_FIELDS:
            field = self.fields[f"new_{name}"]
            field.widget.attrs["autocomplete"] = "off"
            value = getattr(self.instance, name) if self.instance.pk else ""
            shown = _masked(name, value)
            now = _("Now %(masked)s. Leave empty to keep it.") % {"masked": shown} if shown else _("None yet.")
            field.help_text = f"{field.help_text} {now}".strip()

    def clean_new_push_registration_ids(self):
        text = self.cleaned_data.get("new_push_registration_ids") or ""
        ids = [part.strip() for part in text.split(",") if part.strip()]
        if len(ids) > 10 or any(len(part) > 64 for part in ids):
            raise forms.ValidationError(_("At most 10 ids of at most 64 characters each."))
        return ids

    def save(self, commit=True):
        for name in ADDRESS_FIELDS:
            if name in self.cleaned_data.get("clear_addresses", []):
                setattr(self.instance, name, [] if name == "push_registration_ids" else "")
            elif self.cleaned_data.get(f"new_{name}"):
                setattr(self.instance, name, self.cleaned_data[f"new_{name}"])
        return super().save(commit)


def _masked(name: str, value) -> str:
    if isinstance(value, list):
        return ", ".join(mask_id(v) for v in value)
    return mask_phone(value) if name == "phone" else mask_id(value)


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    """Search takes an external id, a name, or a full phone or openid (found by its keyed hash:
    the clear value is not in the table)."""

    form = RecipientForm
    list_display = ["audience", "external_id", "name", "masked_phone", "masked_mini_openid", "masked_oa_openid"]
    list_filter = ["audience"]
    search_fields = ["external_id", "name"]
    search_help_text = _("An external id, a name, or a full phone number or openid.")
    inlines = [SubscribeConsentInline, PreferenceInline]

    def get_fields(self, request, obj=None):
        return ["audience", "external_id", "name", "locale", *(f"new_{n}" for n in ADDRESS_FIELDS), "clear_addresses"]

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        ids = recipients_matching(search_term.strip()) if search_term.strip() else []
        return (found | queryset.filter(pk__in=ids) if ids else found), may_have_duplicates

    @admin.display(description=_("phone"))
    def masked_phone(self, obj):
        return mask_phone(obj.phone)

    @admin.display(description=_("mini-program openid"))
    def masked_mini_openid(self, obj):
        return mask_id(obj.wechat_mini_openid)

    @admin.display(description=_("official-account openid"))
    def masked_oa_openid(self, obj):
        return mask_id(obj.wechat_oa_openid)


class ChannelAccountForm(forms.ModelForm):
    """Secrets are write-only: the page shows their last characters, and a blank field keeps them."""

    new_credentials = BlankWhenEmptyJSONField(
        label=_("new credentials"),
        required=False,
        help_text=_('JSON, e.g. {"app_secret": "…"}. Leave empty to keep the stored ones.'),
    )

    class Meta:
        model = ChannelAccount
        fields = [
            "name",
            "channel",
            "provider",
            "is_default",
            "enabled",
            "sandbox",
            "base_url",
            "app_id",
            "options",
            "rate_limit_per_minute",
            "weight",
            "secondary",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["weight"].required = False  # empty: 0, the default account only

    def clean_weight(self):
        return self.cleaned_data.get("weight") or 0

    def clean(self):
        """What the provider would refuse in the account's settings, named by field."""
        data = super().clean()
        channel = data.get("channel")
        if channel == Channel.APP_PUSH and isinstance(data.get("options"), dict):
            found = push_option_problems(push_options(data["options"], {}))
            if found:
                self.add_error("options", "; ".join(found))
        limit = data.get("rate_limit_per_minute")
        if channel == Channel.WECOM_ROBOT and limit and limit > ROBOT_PER_MINUTE:
            self.add_error(
                "rate_limit_per_minute",
                _("A WeCom group robot takes at most %(limit)d messages a minute.") % {"limit": ROBOT_PER_MINUTE},
            )
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("new_credentials"):
            self.instance.credentials = self.cleaned_data["new_credentials"]
        return super().save(commit)


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    form = ChannelAccountForm
    list_display = [
        "name",
        "channel",
        "provider",
        "is_default",
        "weight",
        "secondary",
        "enabled",
        "sandbox",
        "stored_credentials",
        "check_ok",
        "check_message",
        "checked_at",
    ]
    list_filter = ["channel", "provider", "enabled", "sandbox", "check_ok"]
    search_fields = ["name", "app_id"]
    readonly_fields = ["stored_credentials", "check_ok", "check_message", "checked_at"]
    actions = ["test_connection"]

    def get_changeform_initial_data(self, request):
        """A new account is the real provider's in production (DEBUG off): *sandbox* starts
        unticked there, ticked under `make run`."""
        return {"sandbox": settings.DEBUG, **super().get_changeform_initial_data(request)}

    @admin.action(description=_("Test connection"), permissions=["change"])
    def test_connection(self, request, queryset):
        for account in queryset:
            ok = account_check(account=account)
            level = messages.SUCCESS if ok else messages.ERROR
            # The name first would be capitalized by the admin ("Sandbox-…"): it is shown as stored.
            words = _("Channel account “%(name)s”: %(result)s")
            self.message_user(request, words % {"name": account.name, "result": account.check_message}, level)

    @admin.display(description=_("stored credentials"))
    def stored_credentials(self, obj):
        # One a line: side by side, three of them pushed the list past the filters at 1400 px.
        shown = [(k, mask_secret(str(v))) for k, v in (obj.credentials or {}).items()]
        return format_html_join(mark_safe("<br>"), "{}={}", shown) or "—"


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = [
        "number",
        "kind",
        "provider_key",
        "started_at",
        "settled_at",
        "duration_ms",
        "outcome",
        "error_code",
        "error_message",
        "provider_message_id",
        "raw_response",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class TemplateCodeFilter(ValuesListFilter):
    """Every template code deliveries were made for, read off the coverage index (not the table)."""

    title = _("template code")
    parameter_name = field_name = "template_code"

    def values(self, request, model_admin):
        return [(code, code) for code in distinct_values(Delivery, "template_code") if code]


class ReasonFilter(ValuesListFilter):
    """The engine's own reason codes, and whatever codes the latest deliveries ended with (the
    providers' own: they come and go)."""

    title = _("reason")
    parameter_name = field_name = "last_error_code"

    def values(self, request, model_admin):
        codes = set(REASONS) | set(latest_values(model_admin, "last_error_code"))
        return [(code, reason_label(code)) for code in sorted(codes)]


@admin.register(Delivery)
class DeliveryAdmin(WholeValueSearch, HistoryRecordAdmin):
    list_display = [
        "id",
        "channel",
        "template",
        "recipient",
        "status",
        "attempt_count",
        "reason",
        "created",
        "finished",
    ]
    list_filter = ["status", "channel", TemplateCodeFilter, ReasonFilter, "created_at", "finished_at"]
    search_help_text = _(
        "A delivery, event or message id, a template code, a key, an external id, or a full phone or openid."
    )
    list_select_related = ["recipient"]
    # The stored code and English reason shown in the console's language where the catalog has them.
    readonly_fields = [
        {"last_error_code": "reason", "last_error_message": "error_words"}.get(f.name, f.name)
        for f in Delivery._meta.fields
        if f.name != "address"
    ] + ["masked"]
    exclude = ["address", "last_error_code", "last_error_message"]
    inlines = [DeliveryAttemptInline, DeliveryStatusChangeInline]
    actions = ["retry_now", "cancel"]

    def search_match(self, term):
        people = set(recipients_matching(term))
        people |= set(Recipient.objects.filter(external_id=term).values_list("pk", flat=True))
        match = Q(template_code=term) | Q(idempotency_key=term) | Q(recipient_id__in=people)
        if (number := whole_number(term)) is not None:
            match |= Q(pk=number) | Q(event_ref=number) | Q(message_ref=number)
        return match

    @admin.action(description=_("Retry now"), permissions=["retry"])
    def retry_now(self, request, queryset):
        count = deliveries_retry(ids=list(queryset.values_list("pk", flat=True)), operator=request.user.get_username())
        self.message_user(request, _("%(count)d deliveries sent again.") % {"count": count}, messages.SUCCESS)

    @admin.action(description=_("Cancel"), permissions=["cancel"])
    def cancel(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = deliveries_cancel_ids(ids=ids, operator=request.user.get_username())
        self.message_user(request, _("%(count)d deliveries cancelled.") % {"count": count}, messages.SUCCESS)

    def has_retry_permission(self, request):
        return request.user.has_perm("channels.retry_delivery")

    def has_cancel_permission(self, request):
        return request.user.has_perm("channels.cancel_delivery")

    @admin.display(description=_("address"))
    def masked(self, obj):
        return masked_address(obj.channel, obj.address)

    @admin.display(description=_("last error message"))
    def error_words(self, obj):
        return gettext(obj.last_error_message) if obj.last_error_message else "—"

    @admin.display(description=_("reason"), ordering="last_error_code")
    def reason(self, obj):
        return reason_label(obj.last_error_code) or "—"

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, obj):
        return _short_time(obj.created_at)

    @admin.display(description=_("finished at"), ordering="finished_at")
    def finished(self, obj):
        return _short_time(obj.finished_at)

    @admin.display(description=_("template code"), ordering="template_code")
    def template(self, obj):
        # A test send is marked where the template is named (a column of its own for the rare
        # test row pushed the list past 1280 px once ids had eight digits).
        if obj.idempotency_key.startswith("test:"):
            return format_html("{} <strong>【{}】</strong>", obj.template_code, _("test send"))
        return obj.template_code

    def record_title(self, obj):
        return _("Delivery #%(id)s: %(channel)s, %(status)s") % {
            "id": obj.pk,
            "channel": obj.get_channel_display(),
            "status": obj.get_status_display(),
        }


@admin.register(OtpCode)
class OtpCodeAdmin(admin.ModelAdmin):
    """Who asked for a code, when, and what became of it; never the code or its hashes."""

    list_display = ["purpose", "phone", "created_at", "expires_at", "failed_tries", "used_at", "handed_over"]
    list_filter = ["purpose", "created_at"]
    search_fields = ["=event_ref"]
    fields = ["purpose", "phone", "event_ref", "created_at", "expires_at", "failed_tries", "used_at", "handed_over"]
    readonly_fields = fields

    @admin.display(description=_("handed to the provider"), boolean=True)
    def handed_over(self, obj):
        return not obj.sealed_code

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TokenRefresh)
class TokenRefreshAdmin(admin.ModelAdmin):
    """Every access-token request to WeChat and WeCom: which account, when, why and what the
    provider answered. Written by the senders and the connection test only; purged after
    TOKEN_REFRESH_RETENTION_DAYS. The token itself is never kept."""

    list_display = ["at", "account", "reason", "ok", "expires_in", "error_code", "error_message"]
    list_filter = ["reason", "ok", "account", "at"]
    list_select_related = ["account"]
    fields = list_display
    readonly_fields = fields
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
