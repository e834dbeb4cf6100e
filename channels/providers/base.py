from dataclasses import dataclass, field

from ..models import AttemptOutcome, Delivery


@dataclass(frozen=True)
class DeliveryResult:
    """A provider's answer, normalized: the outcome plus the provider's own code and words."""

    outcome: str
    code: str = ""
    message: str = ""
    raw: dict = field(default_factory=dict)
    provider_message_id: str = ""

    def __post_init__(self):
        if self.outcome not in AttemptOutcome.values:
            raise ValueError(f"unknown outcome {self.outcome!r}")


class Backend:
    """One provider's way of sending one channel. `send` never raises for a provider's refusal:
    it returns the refusal as a result; it raises only for the project's own bugs."""

    channel: str = ""
    provider: str = ""
    # True for backends that only write to our own database: the engine then calls send_many
    # inside the transaction that claims the deliveries (see channels/sending.py).
    local: bool = False

    def send(self, delivery: Delivery) -> DeliveryResult:
        raise NotImplementedError

    def send_many(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        """Local backends only: one result per delivery, in order, inside the claiming transaction."""
        raise NotImplementedError

    def problems(self, content: dict) -> list[str]:
        """What this channel's provider would refuse in this content, found before sending (the
        admin's preview, and a template that shows any cannot be saved)."""
        return []

    def check(self, account) -> DeliveryResult:
        """Ask the provider whether the account works, reaching no patient or doctor: SENT when
        it does, otherwise the provider's own code and words."""
        return DeliveryResult(AttemptOutcome.SKIPPED, "no_check", "This channel has no connection check.")
