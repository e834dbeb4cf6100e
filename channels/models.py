"""How a message gets there: addresses, consents, channel accounts, deliveries and their attempts.

This app knows nothing of scenarios. A delivery is tagged with the event and message it serves
(`event_ref`, `message_ref`, `template_code`) so the layers above can find it.
"""

from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .fields import EncryptedJSONField, EncryptedListField, EncryptedTextField, KeyedHashField, keyed_hash
from .masking import mask_address


class Channel(models.TextChoices):
    INBOX = "inbox", _("Station inbox")
    WECHAT_MINI_SUBSCRIBE = "wechat_mini_subscribe", _("WeChat mini-program subscribe message")
    WECHAT_OA_TEMPLATE = "wechat_oa_template", _("WeChat official-account template message")
    WECOM_ROBOT = "wecom_robot", _("WeCom group robot")
    WECOM_APP = "wecom_app", _("WeCom app message")
    APP_PUSH = "app_push", _("App push")
    SMS = "sms", _("SMS")


class Audience(models.TextChoices):
    PATIENT = "patient", _("Patient")
    DOCTOR = "doctor", _("Doctor")
    PHARMACIST = "pharmacist", _("Pharmacist")
    OPERATIONS = "operations", _("Operations staff")


class Recipient(models.Model):
    """A person's addresses on every channel, keyed by audience and the hospital's own id.

    The one place a phone or an openid is kept: encrypted at rest (FIELD_ENCRYPTION_KEYS), each
    searchable address beside its keyed hash (`*_hash`, FIELD_HASH_KEY), which is how a person is
    found by phone or openid (`channels.addresses.recipients_find`)."""

    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    external_id = models.CharField(_("external id"), max_length=64)
    name = models.CharField(_("name"), max_length=100, blank=True)
    phone = EncryptedTextField(_("phone"), max_length=32, blank=True)
    wechat_mini_openid = EncryptedTextField(_("mini-program openid"), max_length=64, blank=True)
    wechat_oa_openid = EncryptedTextField(_("official-account openid"), max_length=64, blank=True)
    wechat_unionid = EncryptedTextField(_("WeChat unionid"), max_length=64, blank=True)
    push_registration_ids = EncryptedListField(_("push registration ids"), default=list, blank=True)
    wecom_userid = EncryptedTextField(_("WeCom user id"), max_length=64, blank=True)
    phone_hash = KeyedHashField(source="phone", db_index=True)
    wechat_mini_openid_hash = KeyedHashField(source="wechat_mini_openid", db_index=True)
    wechat_oa_openid_hash = KeyedHashField(source="wechat_oa_openid", db_index=True)
    wechat_unionid_hash = KeyedHashField(source="wechat_unionid", db_index=True)
    wecom_userid_hash = KeyedHashField(source="wecom_userid", db_index=True)
    locale = models.CharField(_("locale"), max_length=16, default="zh-hans")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        constraints = [models.UniqueConstraint(fields=["audience", "external_id"], name="recipient_unique_id")]

    def __str__(self):
        return f"{self.audience}:{self.external_id}"

    def save(self, *args, **kwargs):
        # An address saved by name takes its hash along (update_or_create names only what it set).
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, *(f"{f}_hash" for f in HASHED if f in update_fields)}
        super().save(*args, **kwargs)


# The addresses a person can be found by, each with a keyed-hash column `<name>_hash`.
HASHED = ("phone", "wechat_mini_openid", "wechat_oa_openid", "wechat_unionid", "wecom_userid")
ADDRESS_FIELDS = (*HASHED, "push_registration_ids")


@receiver(pre_save, sender=Recipient)
def _hashes_for_fixtures(sender, instance, raw, **kwargs):
    # loaddata saves "raw", past the hash fields' pre_save: compute them here instead.
    if raw:
        for name in HASHED:
            setattr(instance, f"{name}_hash", keyed_hash(name, getattr(instance, name)))


class SubscribeConsent(models.Model):
    """Mini-program subscribe consents a recipient granted for one template; each send uses one."""

    recipient = models.ForeignKey(
        Recipient, verbose_name=_("recipient"), on_delete=models.CASCADE, related_name="consents"
    )
    template_id = models.CharField(_("WeChat template id"), max_length=128)
    remaining = models.PositiveIntegerField(_("remaining"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("subscribe consent")
        verbose_name_plural = _("subscribe consents")
        constraints = [models.UniqueConstraint(fields=["recipient", "template_id"], name="consent_unique")]

    def __str__(self):
        return f"{self.template_id} ×{self.remaining}"


class Preference(models.Model):
    """What one person wants to receive: a global switch per channel, and category × channel.

    Both maps hold only what the person (or the backend on their behalf) said; anything unsaid
    falls back to the audience's defaults (PreferenceDefault), then to "on". Critical messages
    ignore preferences (scenarios/policies.py)."""

    recipient = models.OneToOneField(
        Recipient, verbose_name=_("recipient"), on_delete=models.CASCADE, related_name="preference"
    )
    channels = models.JSONField(_("channels"), default=dict, blank=True, help_text=_('e.g. {"sms": false}'))
    categories = models.JSONField(
        _("categories"), default=dict, blank=True, help_text=_('e.g. {"consultation": {"app_push": false}}')
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("preference")
        verbose_name_plural = _("preferences")

    def __str__(self):
        return str(self.recipient)


class PreferenceDefault(models.Model):
    """An audience's defaults, edited by operations staff: what a person gets until they say."""

    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices, unique=True)
    channels = models.JSONField(_("channels"), default=dict, blank=True, help_text=_('e.g. {"sms": false}'))
    categories = models.JSONField(
        _("categories"), default=dict, blank=True, help_text=_('e.g. {"points": {"app_push": false}}')
    )

    class Meta:
        verbose_name = _("preference default")
        verbose_name_plural = _("preference defaults")

    def __str__(self):
        return self.get_audience_display()

    def clean(self):
        """The checks of the preferences API (PreferenceError), so a default it would refuse is
        refused here, not kept and silently ignored."""
        from django.core.exceptions import ValidationError

        from .preferences import preference_errors  # it imports this module

        super().clean()
        errors: dict[str, list[str]] = {}
        for path, problems in preference_errors(channels=self.channels, categories=self.categories).items():
            errors.setdefault(path.split(".")[0], []).extend(f"{path}: {p}" for p in problems)
        if errors:
            raise ValidationError(errors)


class Provider(models.TextChoices):
    BUILTIN = "builtin", _("Built in")
    WECHAT = "wechat", _("WeChat")
    WECOM = "wecom", _("WeCom")
    JPUSH = "jpush", _("JPush")
    ALIYUN = "aliyun", _("Aliyun SMS")
    TENCENT = "tencent", _("Tencent Cloud SMS")


class ChannelAccount(models.Model):
    """Credentials and options for one channel at one provider, edited in the admin."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    channel = models.CharField(_("channel"), max_length=32, choices=Channel.choices)
    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices)
    is_default = models.BooleanField(_("default for its channel"), default=False)
    enabled = models.BooleanField(_("enabled"), default=True)
    sandbox = models.BooleanField(
        _("sandbox"), default=True, help_text=_("Send to the local fake provider server instead of the provider.")
    )
    base_url = models.CharField(
        _("base URL"),
        max_length=255,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text=_("Empty: the provider's public API."),
    )
    app_id = models.CharField(_("app id / key id"), max_length=128, blank=True)
    credentials = EncryptedJSONField(_("credentials"), blank=True, default=dict)
    options = models.JSONField(_("options"), default=dict, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(_("rate limit per minute"), null=True, blank=True)
    # Provider failover (channels/routing.py): normal traffic is shared by weight among the
    # channel's enabled accounts with a weight; provider-side failures move to `secondary`.
    weight = models.PositiveIntegerField(
        _("weight"),
        default=0,
        help_text=_("Share of normal traffic among the channel's accounts with a weight; 0: the default only."),
    )
    secondary = models.ForeignKey(
        "self",
        verbose_name=_("fails over to"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("Used when this account fails on the provider's side (balance, signature, system error)."),
    )
    checked_at = models.DateTimeField(_("last connection test"), null=True, blank=True)
    check_ok = models.BooleanField(_("connection works"), null=True, blank=True)
    check_message = models.CharField(_("connection test result"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("channel account")
        verbose_name_plural = _("channel accounts")
        constraints = [
            models.UniqueConstraint(
                fields=["channel"], condition=Q(is_default=True), name="one_default_account_per_channel"
            )
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if self.channel == Channel.WECOM_ROBOT and not self.rate_limit_per_minute:
            # A robot takes 20 messages a minute; an account with a limit is sent one delivery at
            # a time through its sliding window (channels/ratelimit.py), never as a free chunk.
            self.rate_limit_per_minute = 20
        super().save(*args, **kwargs)


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")
    CANCELLED = "cancelled", _("Cancelled")
    # Held by a policy (quiet hours) until not_before; the release scan queues it then.
    DEFERRED = "deferred", _("Deferred")
    # The provider may or may not have taken it (a timeout, a worker killed mid-call): while
    # finished_at is empty it waits for reconciliation (channels/reconcile.py); once finished it
    # stays unknown for operations to look at and retry by hand.
    UNKNOWN = "unknown", _("Outcome unknown")
    # The provider said this repeats a message it already delivered (duplicate_of says which).
    DEDUPLICATED = "deduplicated", _("Deduplicated by the provider")
    # After sent: what the provider or the person reported (channels/timeline.py). These never
    # move backwards: a late receipt is kept on the timeline, the status stays the furthest.
    DELIVERED = "delivered", _("Delivered")
    UNDELIVERED = "undelivered", _("Not delivered")
    READ = "read", _("Read")
    CLICKED = "clicked", _("Clicked")


# The provider took it, whatever it reported after: what "sent" counts mean.
AFTER_SENT = (
    DeliveryStatus.SENT,
    DeliveryStatus.UNDELIVERED,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.CLICKED,
)
# It reached the person (read or clicked imply delivered).
REACHED = (DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.CLICKED)
OPENED = (DeliveryStatus.READ, DeliveryStatus.CLICKED)
# On the way, not an outcome: a change to one of these is news to nobody outside (no status webhook
# names it, and it finishes no delivery, so it settles no message), so its timeline row is written
# published already (channels/timeline.py) and the webhooks' publisher never rewrites it.
QUIET = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED})


class Delivery(models.Model):
    """One message to one address over one channel; the table is also the outbox."""

    channel = models.CharField(_("channel"), max_length=32, choices=Channel.choices)
    account = models.ForeignKey(
        ChannelAccount, verbose_name=_("account"), null=True, blank=True, on_delete=models.PROTECT
    )
    # No index of its own: delivery_recent (below) begins with it, and serves its lookups.
    recipient = models.ForeignKey(
        Recipient, verbose_name=_("recipient"), null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    # Masked (what the admin and the API show); the engine reads the real one from the directory
    # entry `recipient`, for this channel, into memory only (channels/addresses.py).
    address = models.CharField(_("address"), max_length=256, blank=True)
    content = models.JSONField(_("content"), default=dict)
    # Unique (Meta.constraints): a constraint, not unique=True, which on PostgreSQL also builds a
    # LIKE index nothing reads (channels 0014).
    idempotency_key = models.CharField(_("idempotency key"), max_length=100)
    status = models.CharField(_("status"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    not_before = models.DateTimeField(_("not before"))
    enqueued_at = models.DateTimeField(_("enqueued at"), null=True, blank=True)
    attempt_count = models.PositiveIntegerField(_("attempts"), default=0)
    # A claim: the worker that holds the row ("sending", or an unknown one being reconciled) and
    # until when. A lease that ran out belongs to a worker that died (channels/sending.py).
    claim = models.CharField(_("claim"), max_length=32, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    # Indexed where set only (delivery_duplicate_of): almost every row holds NULL here.
    duplicate_of = models.ForeignKey(
        "self",
        verbose_name=_("duplicate of"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    last_error_code = models.CharField(_("last error code"), max_length=64, blank=True)
    last_error_message = models.TextField(_("last error message"), blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    # Why `account` sends it: "default", "binding", "weighted", "circuit_open", "failover: <code>".
    route_reason = models.CharField(_("route"), max_length=100, blank=True)
    event_ref = models.BigIntegerField(_("event"), null=True, blank=True, db_index=True)
    message_ref = models.BigIntegerField(_("message"), null=True, blank=True, db_index=True)
    template_code = models.CharField(_("template code"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        permissions = [("retry_delivery", _("Can retry deliveries")), ("cancel_delivery", _("Can cancel deliveries"))]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="channels_delivery_idempotency_key_key")
        ]
        # On PostgreSQL also a BRIN index of created_at (channels 0014): the home page's "today".
        indexes = [
            # The beat tick's claim: queued rows whose time has come.
            models.Index(fields=["not_before"], condition=Q(status="queued"), name="delivery_due"),
            # Inbox rows a task takes along (channels/sending.py, LOCAL_BATCH): without it, each
            # inbox task would walk a backlog of queued provider sends (a broadcast's SMS) first.
            models.Index(
                fields=["not_before"], condition=Q(status="queued", channel="inbox"), name="delivery_due_inbox"
            ),
            # Claims whose lease ran out (worker killed mid-send), and unknown outcomes to reconcile.
            models.Index(fields=["lease_until"], condition=Q(status="sending"), name="delivery_lease"),
            models.Index(
                fields=["not_before"],
                condition=Q(status="unknown", finished_at__isnull=True),
                name="delivery_reconcile",
            ),
            # The coverage matrix and admin filters.
            models.Index(fields=["template_code", "channel", "status", "finished_at"], name="delivery_coverage"),
            # Quiet hours: held deliveries whose time has come (channels.services.deliveries_release_deferred).
            models.Index(fields=["not_before"], condition=Q(status="deferred"), name="delivery_deferred"),
            # Frequency caps: one person's recent deliveries on a channel (scenarios/policies.py).
            models.Index(fields=["recipient", "channel", "created_at"], name="delivery_recent"),
            # The home page's deliveries needing attention: outcomes unknown, finished or not (few rows).
            models.Index(fields=["updated_at"], condition=Q(status="unknown"), name="delivery_unknown"),
            # Provider de-duplication: which deliveries repeat this one (few rows; NULL elsewhere).
            models.Index(
                fields=["duplicate_of"], condition=Q(duplicate_of__isnull=False), name="delivery_duplicate_of"
            ),
        ]

    def __str__(self):
        # The console's breadcrumbs and links: the channel as staff call it.
        return f"{self.get_channel_display()} #{self.pk}"

    def save(self, *args, **kwargs):
        # The engine holds the real address in memory while it sends (channels/addresses.py);
        # the table keeps it masked, whatever is saved.
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "address" not in update_fields:
            return super().save(*args, **kwargs)
        address, self.address = self.address, mask_address(self.channel, self.address)
        try:
            super().save(*args, **kwargs)
        finally:
            self.address = address


class AttemptOutcome(models.TextChoices):
    # Written before the request leaves, so a crash leaves a trace (channels/sending.py).
    PENDING = "pending", _("Waiting for the provider")
    SENT = "sent", _("Sent")
    PERMANENT = "permanent", _("Permanent failure")
    TRANSIENT = "transient", _("Transient failure")
    TOKEN_EXPIRED = "token_expired", _("Token expired")
    SKIPPED = "skipped", _("Skipped")
    # No answer (timeout, connection lost after the request left, worker killed): reconciled.
    UNKNOWN = "unknown", _("Outcome unknown")
    DEDUPLICATED = "deduplicated", _("Deduplicated by the provider")


class AttemptKind(models.TextChoices):
    SEND = "send", _("Send")
    RECONCILE = "reconcile", _("Reconciliation")


class DeliveryAttempt(models.Model):
    """One try at sending, with the provider's raw answer and the time it took."""

    delivery = models.ForeignKey(
        Delivery, verbose_name=_("delivery"), on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveIntegerField(_("number"))
    kind = models.CharField(_("kind"), max_length=16, choices=AttemptKind.choices, default=AttemptKind.SEND)
    # The idempotency key the provider was given (WeChat client_msg_id, JPush cid, Aliyun OutId,
    # Tencent SessionContext), recorded before the request left.
    provider_key = models.CharField(_("provider key"), max_length=128, blank=True)
    started_at = models.DateTimeField(_("started at"))
    settled_at = models.DateTimeField(_("settled at"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    outcome = models.CharField(_("outcome"), max_length=16, choices=AttemptOutcome.choices)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    raw_response = models.JSONField(_("raw response"), null=True, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_unique_number")]
        indexes = [models.Index(fields=["delivery"], condition=Q(outcome="pending"), name="attempt_open")]

    def __str__(self):
        return f"#{self.number} {self.get_outcome_display()}"


class OtpCode(models.Model):
    """A one-time SMS code: only keyed hashes of the code and the phone are kept, with a short
    life and a cap on wrong tries; a sealed copy of the code lives until the provider answers."""

    phone = models.CharField(_("phone"), max_length=32, help_text=_("Masked."))
    phone_hash = models.CharField(max_length=64, default="")
    purpose = models.CharField(_("purpose"), max_length=64)
    # The backend that asked for it (ApiKey.client): only that backend checks it.
    client = models.CharField(_("client"), max_length=64, blank=True, default="")
    code_hash = models.CharField(max_length=64)
    sealed_code = models.TextField(blank=True)
    event_ref = models.BigIntegerField(_("event"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    failed_tries = models.PositiveIntegerField(_("failed tries"), default=0)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("SMS code")
        verbose_name_plural = _("SMS codes")
        indexes = [
            models.Index(fields=["phone_hash", "purpose", "-created_at"], name="otp_lookup"),
            models.Index(fields=["phone_hash", "-created_at"], name="otp_limits"),
            models.Index(fields=["event_ref"], name="otp_event"),
        ]

    def __str__(self):
        return f"{self.purpose} #{self.pk}"


class TokenRefreshReason(models.TextChoices):
    FIRST_USE = "first_use", _("First use")
    EXPIRED = "expired", _("Expired")
    INVALID = "invalid", _("Provider said invalid")
    CHECK = "check", _("Connection test")


class TokenRefresh(models.Model):
    """One access-token request to a provider (WeChat, WeCom): which account, when, why, and the
    provider's answer. Kept TOKEN_REFRESH_RETENTION_DAYS days."""

    account = models.ForeignKey(
        ChannelAccount, verbose_name=_("account"), on_delete=models.CASCADE, related_name="token_refreshes"
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    reason = models.CharField(_("reason"), max_length=16, choices=TokenRefreshReason.choices)
    ok = models.BooleanField(_("succeeded"))
    expires_in = models.PositiveIntegerField(_("valid for (s)"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.CharField(_("error message"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("token refresh")
        verbose_name_plural = _("token refreshes")
        ordering = ["-at"]
        indexes = [models.Index(fields=["account", "-at"], name="token_refresh_account")]

    def __str__(self):
        # The account by its name, the reason in words, the time in the console's time zone.
        return f"{self.account} · {self.get_reason_display()} · {timezone.localtime(self.at):%Y-%m-%d %H:%M:%S}"


class ChangeSource(models.TextChoices):
    CREATE = "create", _("Created")
    SEND = "send", _("Send")
    RECONCILE = "reconcile", _("Reconciliation")
    SCAN = "scan", _("Outbox scan")
    OPERATOR = "operator", _("Operator")
    CANCEL = "cancel", _("Cancelled by a later event")
    RECEIPT = "receipt", _("Provider receipt")
    INBOX = "inbox", _("Inbox read")
    CLICK = "click", _("Link followed")


class DeliveryStatusChange(models.Model):
    """One change of a delivery's status, written in the transaction that made it: the delivery's
    timeline, and the outbox the status webhooks are driven from (`published_at` empty: not yet
    handed to notifycenter/webhooks.py; a QUIET change, or a late report, is written published)."""

    delivery = models.ForeignKey(
        Delivery, verbose_name=_("delivery"), on_delete=models.CASCADE, related_name="status_changes"
    )
    status = models.CharField(_("status"), max_length=16, choices=DeliveryStatus.choices)
    at = models.DateTimeField(_("at"))
    source = models.CharField(_("source"), max_length=16, choices=ChangeSource.choices)
    # Whether the delivery's status moved (a late `delivered` after `clicked` is kept, not applied).
    applied = models.BooleanField(_("applied"), default=True)
    code = models.CharField(_("code"), max_length=64, blank=True)
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)

    class Meta:
        verbose_name = _("status change")
        verbose_name_plural = _("status changes")
        ordering = ["delivery", "id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(published_at__isnull=True), name="status_change_unpublished"),
        ]

    def __str__(self):
        # A timeline row's heading in the console: the status in words, the time in the console's zone.
        return f"{self.get_status_display()} @ {timezone.localtime(self.at):%Y-%m-%d %H:%M:%S}"


class ReceiptOutcome(models.TextChoices):
    APPLIED = "applied", _("Applied")
    DUPLICATE = "duplicate", _("Duplicate")
    LATE = "late", _("Kept, status already further")
    EARLY = "early", _("Waiting for the send to settle")
    IGNORED = "ignored", _("Kept, the delivery never went out")
    UNMATCHED = "unmatched", _("Names no delivery")
    REFUSED = "refused", _("Refused (forged or replayed)")


class ProviderReceipt(models.Model):
    """What a provider reported about a message (pushed to a callback or pulled), kept whether or
    not it names a delivery of ours; refused calls too, with the reason."""

    provider = models.CharField(_("provider"), max_length=16, choices=Provider.choices)
    account = models.ForeignKey(
        ChannelAccount, verbose_name=_("account"), null=True, blank=True, on_delete=models.SET_NULL
    )
    delivery = models.ForeignKey(
        Delivery, verbose_name=_("delivery"), null=True, blank=True, on_delete=models.SET_NULL, related_name="receipts"
    )
    # What the provider named the message by: its id (BizId, SerialNo, MsgID, msg_id) and our key
    # (OutId, SessionContext).
    provider_message_id = models.CharField(_("provider message id"), max_length=128, blank=True)
    our_key = models.CharField(_("our key"), max_length=128, blank=True)
    status = models.CharField(_("reported status"), max_length=16, blank=True)
    code = models.CharField(_("provider code"), max_length=64, blank=True)
    text = models.CharField(_("provider words"), max_length=500, blank=True)
    reported_at = models.DateTimeField(_("reported at"), null=True, blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=ReceiptOutcome.choices)
    raw = models.JSONField(_("raw"), null=True, blank=True)

    class Meta:
        verbose_name = _("provider receipt")
        verbose_name_plural = _("provider receipts")
        indexes = [
            models.Index(fields=["received_at"], condition=Q(outcome="early"), name="receipt_early"),
            # The console's search: a receipt by the provider's message id or by our key, one a
            # message sent (a table as large as the SMS deliveries).
            models.Index(fields=["provider_message_id"], name="receipt_message_id"),
            models.Index(fields=["our_key"], name="receipt_our_key"),
        ]

    def __str__(self):
        status = DeliveryStatus(self.status).label if self.status in DeliveryStatus.values else self.status
        return f"{self.get_provider_display()} {self.provider_message_id or self.our_key} {status}"
