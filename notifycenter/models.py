import hashlib
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from channels.fields import EncryptedJSONField

SCOPES = ("events", "recipients", "otp", "inbox-read", "webhooks")


class ApiKey(models.Model):
    """A backend's key. Only a SHA-256 of the key is stored; the key is shown once, when made."""

    client = models.CharField(
        _("client"), max_length=64, help_text=_("Events are idempotent per client, across its keys.")
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    rate_limit_per_minute = models.PositiveIntegerField(_("requests per minute"), default=6000)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self):
        return f"{self.client}/{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw_key: str) -> str:
        # Keys carry 256 bits of randomness, so a plain digest is enough; no slow KDF needed.
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls, *, client: str, name: str, scopes: list[str]) -> tuple["ApiKey", str]:
        """Create a key and return it with the raw key, which is not stored anywhere."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        prefix = secrets.token_hex(4)
        raw = f"nc_{prefix}_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(client=client, name=name, prefix=prefix, hashed_key=cls.hash(raw), scopes=scopes)
        return key, raw


WEBHOOK_EVENTS = (
    "delivery.sent",
    "delivery.delivered",
    "delivery.undelivered",
    "delivery.failed",
    "delivery.read",
    "delivery.clicked",
    "message.settled",
)


def url_without_credentials(value: str) -> None:
    """A webhook URL carries no user name or password: it is listed in the console and answered
    by the API, and the requests are signed with the endpoint's secret instead."""
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            _("Put no user name or password in the URL: the requests are signed with the secret."),
            code="credentials_in_url",
        )


def internal_address(host: str) -> bool:
    """True for this machine (loopback, unspecified), link-local addresses (the cloud metadata
    service, 169.254.169.254) and multicast or reserved ones; a name, as `localhost` or as
    resolved. Private ranges stay allowed: a hospital's backend lives on its intranet."""
    host = (host or "").strip("[]").rstrip(".").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, None)]
        except (OSError, UnicodeError, ValueError):
            return False  # not resolvable now: the send will fail on its own
    for ip in addresses:
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved:
            return True
    return False


def url_not_internal(value: str) -> None:
    """A webhook goes to the client's backend, never back into this server or its cloud's metadata
    (unless WEBHOOK_ALLOW_INTERNAL_URLS: the tests' own receivers listen on 127.0.0.1)."""
    if not settings.WEBHOOK_ALLOW_INTERNAL_URLS and internal_address(urlsplit(value).hostname or ""):
        raise ValidationError(
            _("The URL points at this server or a link-local address; give the address of your backend."),
            code="internal_url",
        )


class WebhookEndpoint(models.Model):
    """Where a client's backend wants to be told of status changes (notifycenter/webhooks.py)."""

    client = models.CharField(_("client"), max_length=64, db_index=True)
    url = models.URLField(_("URL"), max_length=500, validators=[url_without_credentials])
    # {"secret": ...}: kept encrypted, needed in the clear to sign each POST.
    signing = EncryptedJSONField(_("signing secret"), default=dict, blank=True)
    events = models.JSONField(_("events"), default=list)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")

    def __str__(self):
        return f"{self.client} → {self.url}"

    @property
    def secret(self) -> str:
        return (self.signing or {}).get("secret", "")


class WebhookStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Given up")


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row, its tries and the endpoint's answers."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, verbose_name=_("endpoint"), on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(_("event id"), max_length=64)
    event = models.CharField(_("event"), max_length=32)
    # What the order is kept for: "m:<message id>" (its deliveries' events, then message.settled), or
    # "d:<delivery id>" for a delivery without a message; one at a time per subject.
    subject = models.CharField(_("subject"), max_length=32)
    payload = models.JSONField(_("payload"))
    status = models.CharField(_("status"), max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_try_at = models.DateTimeField(_("next try at"))
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    answers = models.JSONField(_("answers"), default=list, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        permissions = [("replay_webhookdelivery", _("Can replay webhook deliveries"))]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_once_per_endpoint")]
        indexes = [
            models.Index(fields=["next_try_at"], condition=Q(status="pending"), name="webhook_due"),
            models.Index(fields=["endpoint", "subject", "id"], condition=Q(status="pending"), name="webhook_order"),
        ]

    def __str__(self):
        return f"{self.event} {self.event_id}"


class PersonRequestAction(models.TextChoices):
    EXPORT = "export", _("access (export)")
    ERASE = "erase", _("erasure")


class PersonRequest(models.Model):
    """One personal-information request answered (PIPL): an access request (export) or an
    erasure, as `manage.py person` ran it. Written in the erasure's own transaction, or before an
    export is printed, so none is answered unrecorded; never changed, and not purged with the
    events: an auditor asks for these records years later (PIPL art. 56: three years at least)."""

    at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    action = models.CharField(_("request"), max_length=16, choices=PersonRequestAction.choices)
    # Whom the request named: "patient:p-42", or a phone or openid masked ("phone 138****5678").
    asked = models.CharField(_("asked about"), max_length=200)
    entries = models.JSONField(_("directory entries"), default=list, blank=True)  # ["patient:p-42", "otp:…"]
    requested_by = models.CharField(_("requested by"), max_length=200, blank=True)  # --by: a name, a ticket
    run_by = models.CharField(_("run by"), max_length=150)  # the login that ran the command

    class Meta:
        verbose_name = _("personal-information request")
        verbose_name_plural = _("personal-information requests")

    def __str__(self):
        return f"{self.get_action_display()} {self.asked}"
