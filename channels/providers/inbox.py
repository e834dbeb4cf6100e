from inbox.services import inbox_message_put

from ..models import AttemptOutcome, Delivery
from .base import Backend, DeliveryResult


class InboxBackend(Backend):
    """The station inbox: a row in the center's own table, written once per delivery."""

    channel = "inbox"
    provider = "builtin"

    def send(self, delivery: Delivery) -> DeliveryResult:
        recipient = delivery.recipient
        if recipient is None:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_recipient", "The recipient was deleted.")
        content = delivery.content
        message, created = inbox_message_put(
            audience=recipient.audience,
            recipient_id=recipient.external_id,
            title=content.get("title", ""),
            body=content.get("body", ""),
            category=content.get("category", "system"),
            link=content.get("link") or {},
            source_key=delivery.idempotency_key,
            template_code=delivery.template_code,
        )
        return DeliveryResult(
            AttemptOutcome.SENT,
            raw={"inbox_message_id": message.pk, "created": created},
            provider_message_id=str(message.pk),
        )
