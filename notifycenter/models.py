import hashlib
import secrets

from django.db import models
from django.utils.translation import gettext_lazy as _

SCOPES = ("events", "recipients", "otp", "inbox-read")


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
