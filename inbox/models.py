from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Category(models.TextChoices):
    CONSULTATION = "consultation", _("Consultation")
    PRESCRIPTION = "prescription", _("Prescription")
    ORDER = "order", _("Order / after-sales")
    POINTS = "points", _("Points")
    SYSTEM = "system", _("System")


class InboxMessage(models.Model):
    """One message in one person's station inbox (站内信).

    The owner is (audience, external id): a doctor and a patient with the same id are different
    people. `source_key` makes writes idempotent: a delivery retried never makes a second row.
    """

    audience = models.CharField(_("audience"), max_length=16)
    recipient_id = models.CharField(_("recipient id"), max_length=64)
    category = models.CharField(_("category"), max_length=16, choices=Category.choices, default=Category.SYSTEM)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"))
    link = models.JSONField(_("link"), default=dict, blank=True)
    source_key = models.CharField(_("source"), max_length=100, unique=True, null=True, blank=True)
    template_code = models.CharField(_("template code"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("inbox message")
        verbose_name_plural = _("inbox messages")
        indexes = [
            # A person's list, newest first, by keyset on id.
            models.Index(
                fields=["audience", "recipient_id", "-id"],
                name="inbox_owner_list",
                condition=Q(deleted_at__isnull=True),
            ),
            # A person's unread count, per category.
            models.Index(
                fields=["audience", "recipient_id", "category"],
                name="inbox_owner_unread",
                condition=Q(deleted_at__isnull=True, read_at__isnull=True),
            ),
        ]

    def __str__(self):
        return self.title
