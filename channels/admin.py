import logging
import re
from urllib.parse import parse_qs, urlencode, urlsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from inbox.admin_lists import (
    RecordOnly,
    ValuesListFilter,
    ViewOnly,
    WholeValueSearch,
    distinct_values,
    latest_values,
    whole_number,
)

from .addresses import recipients_matching
from .admin_timeline import DeliveryStatusChangeInline
from .masking import mask_id, mask_phone, mask_secret
from .models import (
    ADDRESS_FIELDS,
    Channel,
    ChannelAccount,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OtpCode,
    Preference,
    PreferenceDefault,
    Provider,
    Recipient,
    SubscribeConsent,
    TokenRefresh,
)
from .providers.jpush import push_option_problems, push_options
from .ratelimit import ROBOT_PER_MINUTE
from .services import account_check, deliveries_cancel_ids, deliveries_retry, masked_address
from .wording import REASONS, provider_words, reason_label


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


# Who looked a person up in the console: the same logger as `manage.py person`, the record of
# processing an auditor reads (PIPL).
pipl_log = logging.getLogger("notifycenter.pipl")


ERASE_HINT = _(
    "A person's data is erased (PIPL) with manage.py person erase on the server, not here: it also "
    "empties their inbox, message texts and event data, stops their reminders and plans, and logs who asked."
)


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    """Search takes an external id, a name, or a full phone or openid (found by its keyed hash:
    the clear value is not in the table). Opening a person's page, and finding people by an
    address, leave a log line with the staff member's login (never the address)."""

    form = RecipientForm
    change_form_template = "admin/channels/recipient/change_form.html"
    list_display = ["audience", "external_id", "name", "masked_phone", "masked_mini_openid", "masked_oa_openid"]
    list_filter = ["audience"]
    search_fields = ["external_id", "name"]
    search_help_text = _("An external id, a name, or a full phone number or openid.")
    inlines = [SubscribeConsentInline, PreferenceInline]

    def get_fields(self, request, obj=None):
        return ["audience", "external_id", "name", "locale", *(f"new_{n}" for n in ADDRESS_FIELDS), "clear_addresses"]

    def has_delete_permission(self, request, obj=None):
        """Never from the console: deleting the directory entry would leave the person's inbox,
        message texts and event data behind and call it done (or fail on their reminders). An
        erasure is `manage.py person erase` (README), logged with who asked; the page says so."""
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            pipl_log.info("console view of recipient #%s by %s", object_id, request.user.get_username())
        extra_context = {**(extra_context or {}), "erase_hint": ERASE_HINT}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        ids = recipients_matching(search_term.strip()) if search_term.strip() else []
        if ids:
            who, found_ids = request.user.get_username(), ", ".join(f"#{pk}" for pk in ids)
            pipl_log.info("console search of recipients by an address by %s: %s", who, found_ids)
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


# Which provider sends each channel (an SMS account is Aliyun's or Tencent's).
CHANNEL_PROVIDERS = {
    Channel.INBOX: (Provider.BUILTIN,),
    Channel.WECHAT_OA_TEMPLATE: (Provider.WECHAT,),
    Channel.WECHAT_MINI_SUBSCRIBE: (Provider.WECHAT,),
    Channel.WECOM_ROBOT: (Provider.WECOM,),
    Channel.WECOM_APP: (Provider.WECOM,),
    Channel.APP_PUSH: (Provider.JPUSH,),
    Channel.SMS: (Provider.ALIYUN, Provider.TENCENT),
}
# The credentials each account takes, by the names this center reads (README, Channel accounts):
# (needed to send, optional: for the callbacks).
CREDENTIALS = {
    Provider.WECHAT: (("app_secret",), ("token", "encoding_aes_key")),
    Provider.JPUSH: (("master_secret",), ()),
    Provider.ALIYUN: (("access_key_secret",), ("callback_token",)),
    Provider.TENCENT: (("secret_id", "secret_key"), ("callback_token",)),
}
WECOM_CREDENTIALS = {Channel.WECOM_ROBOT: (("robot_key",), ()), Channel.WECOM_APP: (("corp_secret",), ())}
# What the WeChat consoles take for the server URL's Token and EncodingAESKey.
WECHAT_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")
WECHAT_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
# Fields whose change makes the last connection test say nothing about the account any more.
CONNECTION_FIELDS = {"channel", "provider", "sandbox", "base_url", "app_id", "options", "new_credentials"}


def credential_names(channel: str, provider: str) -> tuple[tuple, tuple]:
    if provider == Provider.WECOM:
        return WECOM_CREDENTIALS.get(channel, ((), ()))
    return CREDENTIALS.get(provider, ((), ()))


def robot_key(value: str) -> str:
    """The key alone: WeCom's console shows the robot's whole webhook address, and that is what
    people paste."""
    if value.startswith(("http://", "https://")):
        return (parse_qs(urlsplit(value).query).get("key") or [""])[0]
    return value


class ChannelAccountForm(forms.ModelForm):
    """Secrets are write-only: the page shows their last characters, and a blank field keeps them.
    Credentials typed are merged into the stored ones (one secret rotated keeps the others; `null`
    removes one), checked against what the provider takes, and a real (not sandbox) account must
    have what it needs to send."""

    new_credentials = BlankWhenEmptyJSONField(
        label=_("new credentials"),
        required=False,
        help_text=_(
            "JSON; only the keys typed change, null removes one; leave empty to keep the stored ones. "
            'WeChat: {"app_secret", "token", "encoding_aes_key"} (AppSecret, and the server '
            'configuration\'s Token and EncodingAESKey); WeCom robot: {"robot_key"} (the key, or the '
            'whole webhook address); WeCom app: {"corp_secret"} (the app\'s Secret); JPush: '
            '{"master_secret"}; Aliyun: {"access_key_secret", "callback_token"}; Tencent Cloud: '
            '{"secret_id", "secret_key", "callback_token"}.'
        ),
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
        help_texts = {
            "app_id": _(
                "WeChat: AppID; WeCom app: CorpID (the AgentId goes in the options); JPush: AppKey; "
                "Aliyun: AccessKey ID; Tencent Cloud: SmsSdkAppId. Empty for a WeCom group robot."
            ),
            "options": _(
                'JSON. WeCom app: {"agentid": 1000002}; SMS: {"sign_name": "…"}; more in the README, Channel accounts.'
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["weight"].required = False  # empty: 0, the default account only
        self.fields["new_credentials"].widget.attrs["autocomplete"] = "off"
        self.replaces_default = None  # the channel's default account this one takes over from

    def clean_weight(self):
        return self.cleaned_data.get("weight") or 0

    def clean(self):
        """What the provider would refuse in the account's settings, named by field."""
        data = super().clean()
        channel, provider = data.get("channel"), data.get("provider")
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
        if channel and provider and provider not in CHANNEL_PROVIDERS.get(channel, ()):
            wanted = " / ".join(str(Provider(p).label) for p in CHANNEL_PROVIDERS.get(channel, ()))
            self.add_error(
                "provider",
                _("%(channel)s is sent by %(wanted)s.") % {"channel": Channel(channel).label, "wanted": wanted},
            )
            return data
        if data.get("options") is not None and not isinstance(data["options"], dict):
            self.add_error("options", _('A JSON object, e.g. {"sign_name": "…"}.'))
            return data
        if data.get("sandbox") and data.get("base_url"):
            self.add_error(
                "base_url",
                _("A sandbox account sends to the fake provider server, not here: untick sandbox to use this URL."),
            )
        if channel and provider:
            self.check_credentials(data, channel, provider)
            self.check_secondary(data, channel)
            self.check_default(data, channel)
        return data

    def check_credentials(self, data: dict, channel: str, provider: str) -> None:
        typed = data.get("new_credentials")
        if typed in (None, "", {}):
            typed = {}
        if not isinstance(typed, dict):
            self.add_error("new_credentials", _('A JSON object, e.g. {"app_secret": "…"}.'))
            return
        needed, optional = credential_names(channel, provider)
        unknown = sorted(set(typed) - set(needed) - set(optional))
        if unknown:
            self.add_error(
                "new_credentials",
                _("%(provider)s takes no credential %(unknown)s; it takes %(known)s.")
                % {
                    "provider": Provider(provider).label,
                    "unknown": ", ".join(unknown),
                    "known": ", ".join((*needed, *optional)) or "—",
                },
            )
            return
        for key, value in typed.items():
            if value is not None and not (isinstance(value, str) and value.strip()):
                self.add_error("new_credentials", _("%(key)s: a text, or null to remove it.") % {"key": key})
                return
        typed = {k: (v.strip() if isinstance(v, str) else v) for k, v in typed.items()}
        if typed.get("robot_key"):
            typed["robot_key"] = robot_key(typed["robot_key"])
            if not typed["robot_key"]:
                self.add_error("new_credentials", _("robot_key: the webhook address has no key=…"))
                return
        if typed.get("token") and not WECHAT_TOKEN.match(typed["token"]):
            self.add_error("new_credentials", _("token: 3 to 32 letters or digits, as the WeChat console takes it."))
        if typed.get("encoding_aes_key") and not WECHAT_AES_KEY.match(typed["encoding_aes_key"]):
            self.add_error(
                "new_credentials", _("encoding_aes_key: 43 letters or digits, as the WeChat console gives it.")
            )
        same_provider = self.instance.pk and (self.instance.channel, self.instance.provider) == (channel, provider)
        merged = dict(self.instance.credentials or {}) if same_provider else {}
        merged.update(typed)
        self.merged_credentials = {k: v for k, v in merged.items() if v is not None}
        if data.get("sandbox"):
            return  # the fake providers take any credentials: an account to try things with
        missing = [name for name in needed if not self.merged_credentials.get(name)]
        if missing:
            self.add_error(
                "new_credentials",
                _("A real account needs %(names)s.") % {"names": ", ".join(missing)},
            )
        if channel != Channel.WECOM_ROBOT and provider != Provider.BUILTIN and not data.get("app_id"):
            self.add_error("app_id", _("A real account needs its app id (see the help below)."))
        options = data.get("options") or {}
        if channel == Channel.WECOM_APP and not str(options.get("agentid", "")).isdigit():
            self.add_error("options", _('A WeCom app needs its AgentId: {"agentid": 1000002}.'))
        if channel == Channel.SMS and not options.get("sign_name"):
            self.add_error("options", _('An SMS account needs its signature: {"sign_name": "…"}.'))

    def check_secondary(self, data: dict, channel: str) -> None:
        secondary = data.get("secondary")
        if secondary is None:
            return
        if self.instance.pk and secondary.pk == self.instance.pk:
            self.add_error("secondary", _("An account cannot fail over to itself."))
        elif secondary.channel != channel:
            self.add_error("secondary", _("The account to fail over to must send the same channel."))

    def check_default(self, data: dict, channel: str) -> None:
        if not data.get("is_default"):
            return
        others = ChannelAccount.objects.filter(channel=channel, is_default=True)
        if self.instance.pk:
            others = others.exclude(pk=self.instance.pk)
        self.replaces_default = others.first()

    def _get_validation_exclusions(self):
        # Taking over as the channel's default: the other account's flag is cleared in the same
        # transaction (ChannelAccountAdmin.save_model), so the one-default constraint holds there.
        exclude = super()._get_validation_exclusions()
        if getattr(self, "replaces_default", None) is not None:
            exclude.add("channel")
        return exclude

    def save(self, commit=True):
        if self.cleaned_data.get("new_credentials") and hasattr(self, "merged_credentials"):
            self.instance.credentials = self.merged_credentials
        if self.instance.pk and CONNECTION_FIELDS & set(self.changed_data):
            # The last test was of other settings: unknown until tested again.
            self.instance.check_ok, self.instance.check_message, self.instance.checked_at = None, "", None
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
        "check_summary",
        "checked_at",
    ]
    list_filter = ["channel", "provider", "enabled", "sandbox", "check_ok"]
    search_fields = ["name", "app_id"]
    readonly_fields = ["stored_credentials", "check_ok", "check_result", "checked_at"]
    actions = ["test_connection"]

    def get_changeform_initial_data(self, request):
        """A new account is the real provider's in production (DEBUG off): *sandbox* starts
        unticked there, ticked under `make run`."""
        return {"sandbox": settings.DEBUG, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        previous = getattr(form, "replaces_default", None)
        if previous is not None:
            ChannelAccount.objects.filter(pk=previous.pk).update(is_default=False)
            self.message_user(
                request,
                _("“%(name)s” is no longer the default for %(channel)s.")
                % {"name": previous.name, "channel": obj.get_channel_display()},
                messages.INFO,
            )
        super().save_model(request, obj, form, change)
        if change and "enabled" in form.changed_data and not obj.enabled:
            self.warn_waiting(request, obj)
        if {"enabled", "is_default"} & set(form.changed_data):
            self.warn_no_default(request, obj)

    def warn_no_default(self, request, obj) -> None:
        """New deliveries go through the channel's enabled default account (or a weighted one), or
        a disabled default's enabled secondary (channels.routing.account_for); without any they
        fail `no_account`."""
        enabled = ChannelAccount.objects.filter(channel=obj.channel, enabled=True)
        if enabled.filter(is_default=True).exists() or enabled.filter(weight__gt=0).exists():
            return
        disabled = ChannelAccount.objects.filter(channel=obj.channel, is_default=True, enabled=False).first()
        if disabled is not None and enabled.filter(pk=disabled.secondary_id).exists():
            self.message_user(
                request,
                _("%(channel)s's new deliveries go through “%(name)s”, the disabled default's secondary.")
                % {"channel": obj.get_channel_display(), "name": disabled.secondary.name},
                messages.WARNING,
            )
            return
        words = _(
            "%(channel)s has no enabled default account now: its new deliveries fail (no_account) "
            "until another account is made the default."
        )
        self.message_user(request, words % {"channel": obj.get_channel_display()}, messages.WARNING)

    def warn_waiting(self, request, obj) -> None:
        """A disabled account takes no new deliveries; those already waiting on it still go out
        through it (the engine sends each delivery with its own account): say so, with a link."""
        waiting = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
        count = Delivery.objects.filter(account=obj, status__in=waiting).count()
        if not count:
            return
        link = (
            reverse("admin:channels_delivery_changelist")
            + "?"
            + urlencode({"account__id__exact": obj.pk, "status__in": ",".join(waiting)})
        )
        words = _(
            "%(count)d deliveries waiting on “%(name)s” go through the channel's account of now when they "
            "are sent (its secondary, or the default). "
            '<a href="%(link)s">See them</a> to cancel them if they must not go out.'
        )
        text = words % {"count": count, "name": escape(obj.name), "link": escape(link)}
        self.message_user(request, mark_safe(text), messages.WARNING)  # noqa: S308 (the values are escaped)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = {"callback": callback_setup(request, obj)} if obj is not None else {}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    @admin.action(description=_("Test connection"), permissions=["change"])
    def test_connection(self, request, queryset):
        for account in queryset:
            ok = account_check(account=account)
            level = messages.SUCCESS if ok else messages.ERROR
            # The name first would be capitalized by the admin ("Sandbox-…"): it is shown as stored.
            words = _("Channel account “%(name)s”: %(result)s")
            self.message_user(request, words % {"name": account.name, "result": check_words(account)}, level)

    @admin.display(description=_("stored credentials"))
    def stored_credentials(self, obj):
        # One a line: side by side, three of them pushed the list past the filters at 1400 px.
        shown = [(k, mask_secret(str(v))) for k, v in (obj.credentials or {}).items()]
        return format_html_join(mark_safe("<br>"), "{}={}", shown) or "—"

    @admin.display(description=_("connection test result"))
    def check_result(self, obj):
        return check_words(obj) or "—"

    @admin.display(description=_("connection test result"))
    def check_summary(self, obj):
        """Short enough for the list (a provider's words run long and pushed the list past the
        filters): what the code means, or the start of the words; all of it on hover."""
        full = check_words(obj)
        code = (obj.check_message or "").partition(": ")[0]
        words = provider_words(code, obj.channel) if obj.check_ok is False else ""
        short = f"{words} ({code})" if words else Truncator(full).chars(40)
        return format_html('<span title="{}">{}</span>', full, short) if full else "—"


def check_words(account) -> str:
    """The last connection test's result: a failure in the provider's code and words, then what
    the code means to a channel admin where it is known."""
    text = account.check_message or ""
    if account.check_ok is False:
        words = provider_words(text.partition(": ")[0], account.channel)
        if words:
            return f"{text} — {words}"
    return text


def callback_setup(request, account) -> dict | None:
    """What to set in the provider's console for its receipts to reach this account: the URL,
    and which stored credential goes where (never its value)."""
    creds = account.credentials or {}
    if account.provider not in (Provider.ALIYUN, Provider.TENCENT, Provider.WECHAT):
        return None
    url = request.build_absolute_uri(
        reverse("callback", kwargs={"provider": account.provider, "account_id": account.pk})
    )
    if account.provider == Provider.WECHAT:
        where = {
            Channel.WECHAT_OA_TEMPLATE: _("Official account platform → 设置与开发 → 基本配置 → 服务器配置"),
            Channel.WECHAT_MINI_SUBSCRIBE: _("Mini program admin → 开发管理 → 开发设置 → 消息推送"),
        }.get(account.channel, "")
        needs = [] if creds.get("token") else ["token"]
        return {
            "where": where,
            "url": url,
            "token": mask_secret(creds.get("token", "")),
            "aes_key": mask_secret(creds.get("encoding_aes_key", "")),
            "missing": needs,
        }
    where = {
        Provider.ALIYUN: _("Aliyun SMS console → 通用设置 → 发送状态回执 (HTTP 批量推送)"),
        Provider.TENCENT: _("Tencent Cloud SMS console → 应用管理 → 回调配置 → 短信下发状态回调"),
    }[account.provider]
    return {
        "where": where,
        "url": f"{url}?token=<callback_token>",
        "callback_token": mask_secret(creds.get("callback_token", "")),
        "missing": [] if creds.get("callback_token") else ["callback_token"],
    }


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
        return reason_label(obj.last_error_code, obj.channel) or "—"

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
class OtpCodeAdmin(ViewOnly, admin.ModelAdmin):
    """Who asked for a code, when, and what became of it; never the code or its hashes."""

    list_display = ["purpose", "phone", "created_at", "expires_at", "failed_tries", "used_at", "handed_over"]
    list_filter = ["purpose", "created_at"]
    search_fields = ["=event_ref"]
    fields = ["purpose", "phone", "event_ref", "created_at", "expires_at", "failed_tries", "used_at", "handed_over"]
    readonly_fields = fields

    @admin.display(description=_("handed to the provider"), boolean=True)
    def handed_over(self, obj):
        return not obj.sealed_code


@admin.register(TokenRefresh)
class TokenRefreshAdmin(RecordOnly, admin.ModelAdmin):
    """Every access-token request to WeChat and WeCom: which account, when, why and what the
    provider answered. Written by the senders and the connection test only; purged after
    TOKEN_REFRESH_RETENTION_DAYS. The token itself is never kept."""

    list_display = ["at", "account", "reason", "ok", "expires_in", "error_code", "error_message"]
    list_filter = ["reason", "ok", "account", "at"]
    list_select_related = ["account"]
    fields = list_display
    readonly_fields = fields
    date_hierarchy = "at"
