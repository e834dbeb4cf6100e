from django.utils.translation import gettext as _

from inbox.changes import changes_last
from inbox.services import inbox_message_put, inbox_messages_put_many

from ..models import AttemptOutcome, Delivery
from .base import Backend, DeliveryResult


def _row(delivery: Delivery) -> dict:
    content = delivery.content
    return {
        "audience": delivery.recipient.audience,
        "recipient_id": delivery.recipient.external_id,
        "title": content.get("title", ""),
        "body": content.get("body", ""),
        "category": content.get("category", "system"),
        "link": content.get("link") or {},
        "actions": content.get("actions") or [],
        "source_key": delivery.idempotency_key,
        "template_code": delivery.template_code,
    }


class InboxBackend(Backend):
    """The station inbox: a row in the center's own table, written once per delivery."""

    channel = "inbox"
    provider = "builtin"
    local = True

    def problems(self, content: dict) -> list[str]:
        title = content.get("title", "")
        return [f"title is {len(title)} characters; the inbox keeps at most 200"] if len(title) > 200 else []

    def writes_last(self):
        """The people's counters and live events: every chunk for the same person (an operations
        duty account that every event names) waits for that person's counter row."""
        return changes_last()

    def check(self, account) -> DeliveryResult:
        return DeliveryResult(AttemptOutcome.SENT, message=_("built in: nothing to connect to"))

    def send(self, delivery: Delivery) -> DeliveryResult:
        if delivery.recipient is None:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_recipient", "The recipient was deleted.")
        message, created = inbox_message_put(**_row(delivery))
        return DeliveryResult(
            AttemptOutcome.SENT,
            raw={"inbox_message_id": message.pk, "created": created},
            provider_message_id=str(message.pk),
        )

    def send_many(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        ids = inbox_messages_put_many([_row(d) for d in deliveries if d.recipient is not None])
        # The message id goes in the attempt's raw answer only, so that deliveries settled alike
        # are updated together (the inbox row is also found by its source_key, the delivery's key).
        return [
            DeliveryResult(AttemptOutcome.SENT, raw={"inbox_message_id": ids[d.idempotency_key]})
            if d.recipient is not None
            else DeliveryResult(AttemptOutcome.PERMANENT, "no_recipient", "The recipient was deleted.")
            for d in deliveries
        ]
