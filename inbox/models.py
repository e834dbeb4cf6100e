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
    Seen (the list showed it), read (opened) and archived are separate times; an archived or
    deleted message leaves the unread and unseen counts.
    """

    audience = models.CharField(_("audience"), max_length=16)
    recipient_id = models.CharField(_("recipient id"), max_length=64)
    category = models.CharField(_("category"), max_length=16, choices=Category.choices, default=Category.SYSTEM)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"))
    link = models.JSONField(_("link"), default=dict, blank=True)
    # Up to two buttons from the template: [{key, label, style, link}], link as `link` above.
    actions = models.JSONField(_("actions"), default=list, blank=True)
    source_key = models.CharField(_("source"), max_length=100, null=True, blank=True)  # noqa: DJ001 (NULL: no source; unique where set)
    template_code = models.CharField(_("template code"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    seen_at = models.DateTimeField(_("seen at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    archived_at = models.DateTimeField(_("archived at"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("inbox message")
        verbose_name_plural = _("inbox messages")
        constraints = [
            # A constraint, not `unique=True`: on PostgreSQL that also makes a varchar_pattern_ops
            # index for LIKE, which nothing runs here, and every new or read message paid for it.
            models.UniqueConstraint(fields=["source_key"], name="inbox_inboxmessage_source_key_key"),
        ]
        indexes = [
            # A person's list, newest first, by keyset on id.
            models.Index(
                fields=["audience", "recipient_id", "-id"],
                name="inbox_owner_list",
                condition=Q(deleted_at__isnull=True),
            ),
            # Reads since a time: channels/reads.py marks the deliveries behind them read.
            models.Index(fields=["read_at"], name="inbox_read_at", condition=Q(read_at__isnull=False)),
            # A person's unread messages (read-all, the unread filter, a recount).
            models.Index(
                fields=["audience", "recipient_id", "category"],
                name="inbox_owner_unread",
                condition=Q(deleted_at__isnull=True, read_at__isnull=True),
            ),
        ]

    def __str__(self):
        return self.title


class InboxCounter(models.Model):
    """A person's counts, kept in the same transaction as every write that changes them, so a
    count reads this one row however many messages the person holds.

    `seq` numbers the person's live events (InboxEvent.seq) in commit order: every change takes
    this row's lock first, so two changes for one person never commit out of order.
    """

    audience = models.CharField(_("audience"), max_length=16)
    recipient_id = models.CharField(_("recipient id"), max_length=64)
    unread_consultation = models.IntegerField(default=0)
    unread_prescription = models.IntegerField(default=0)
    unread_order = models.IntegerField(default=0)
    unread_points = models.IntegerField(default=0)
    unread_system = models.IntegerField(default=0)
    unseen = models.IntegerField(_("unseen"), default=0)
    seq = models.BigIntegerField(_("last event"), default=0)

    class Meta:
        verbose_name = _("inbox counter")
        verbose_name_plural = _("inbox counters")
        constraints = [models.UniqueConstraint(fields=["audience", "recipient_id"], name="inbox_counter_owner")]

    def __str__(self):
        return f"{self.audience}:{self.recipient_id}"


class InboxEvent(models.Model):
    """One change to a person's inbox as the live connections push it, written in the same
    transaction as the change; a client that reconnects with the last `seq` it saw is sent the
    rows after it from here, so nothing is lost across a disconnect or a node restart."""

    audience = models.CharField(_("audience"), max_length=16)
    recipient_id = models.CharField(_("recipient id"), max_length=64)
    seq = models.BigIntegerField(_("sequence"))
    kind = models.CharField(_("kind"), max_length=32)
    data = models.JSONField(_("data"), default=dict)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("inbox live event")
        verbose_name_plural = _("inbox live events")
        constraints = [models.UniqueConstraint(fields=["audience", "recipient_id", "seq"], name="inbox_event_seq")]

    def __str__(self):
        return f"{self.audience}:{self.recipient_id} #{self.seq} {self.kind}"


class InboxActionPress(models.Model):
    """A button of a message pressed by its owner, as the app reported it."""

    message = models.ForeignKey(
        InboxMessage, verbose_name=_("inbox message"), on_delete=models.CASCADE, related_name="presses"
    )
    key = models.CharField(_("button"), max_length=32)
    platform = models.CharField(_("platform"), max_length=16, blank=True)
    pressed_at = models.DateTimeField(_("pressed at"), auto_now_add=True)

    class Meta:
        verbose_name = _("button press")
        verbose_name_plural = _("button presses")

    def __str__(self):
        return f"{self.message_id}:{self.key}"
