from ..models import AttemptOutcome, Delivery
from .base import Backend, DeliveryResult


class RecordingBackend(Backend):
    """For tests (anymail's test backend): records each send and answers with scripted results."""

    channel = "app_push"
    provider = "test"

    def __init__(self, *results: DeliveryResult):
        self.results = list(results)
        self.sent: list[Delivery] = []

    def __call__(self):
        return self  # the registry instantiates backends; tests register this instance

    def send(self, delivery: Delivery) -> DeliveryResult:
        self.sent.append(delivery)
        if self.results:
            result = self.results.pop(0)
            if isinstance(result, Exception):
                raise result
            return result
        return DeliveryResult(AttemptOutcome.SENT, provider_message_id=f"test-{len(self.sent)}")
