from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from ..masking import scrub
from ..models import AttemptOutcome, Delivery

# The providers count their daily quotas by the day in China.
CHINA = ZoneInfo("Asia/Shanghai")


def next_china_day(now: datetime | None = None) -> datetime:
    """Just after midnight following `now` in China: a daily quota is not retried before it."""
    local = (now or datetime.now(UTC)).astimezone(CHINA)
    return (local + timedelta(days=1)).replace(hour=0, minute=0, second=5, microsecond=0)


@dataclass(frozen=True)
class DeliveryResult:
    """A provider's answer, normalized: the outcome plus the provider's own code and words.

    `retry_at` holds a transient failure until then (a daily quota: not before tomorrow);
    `duplicate_key` names the idempotency key of the message a "duplicate" answer repeated."""

    outcome: str
    code: str = ""
    message: str = ""
    raw: dict = field(default_factory=dict)
    provider_message_id: str = ""
    retry_at: datetime | None = None
    duplicate_key: str = ""

    def __post_init__(self):
        if self.outcome not in RESULT_OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")


# What a result may say: every outcome but `pending` (an attempt's before its answer). A constant:
# `AttemptOutcome.values` builds its list on each read, and every answer makes a result or two.
RESULT_OUTCOMES = frozenset(AttemptOutcome.values) - {AttemptOutcome.PENDING}


def scrubbed(result: "DeliveryResult | None", delivery: Delivery) -> "DeliveryResult | None":
    """The result with the delivery's address masked wherever the provider echoed it: attempts
    keep the raw answer, and the directory is the one place an address is kept in clear."""
    if result is None or not delivery.address:
        return result
    return replace(
        result,
        message=scrub(result.message, delivery.address, delivery.channel),
        raw=scrub(result.raw, delivery.address, delivery.channel),
    )


class Reconcile:
    """How an unknown outcome is settled for a channel (docs/architecture.md has the table)."""

    DEDUP = "dedup"  # resend with the same idempotency key while the provider's window is open
    QUERY = "query"  # ask the provider; resend only when it has no record
    NONE = "none"  # no way to know: settle as unknown (unless the binding says at least once)


class Backend:
    """One provider's way of sending one channel. `send` never raises for a provider's refusal:
    it returns the refusal as a result; it raises only for the project's own bugs.

    The engine calls `prepare` (may talk to the provider, must send nothing to a person), then
    records the attempt with `provider_key`, then calls `send`."""

    channel: str = ""
    provider: str = ""
    # True for backends that only write to our own database: the engine then calls send_many
    # inside the transaction that claims the deliveries (see channels/sending.py).
    local: bool = False
    reconcile: str = Reconcile.NONE
    # Reconcile.DEDUP: how long the provider drops a repeat of the same key.
    dedup_window: timedelta = timedelta(0)

    def prepare(self, delivery: Delivery) -> DeliveryResult | None:
        """Anything needed before the attempt is recorded (a JPush cid); a result ends the try."""
        return None

    def writes_last(self):
        """For a local backend: a context around a chunk's transaction (send_many and the
        engine's bookkeeping after it) whose end writes what the backend keeps for last (rows
        every chunk locks, so that their locks last to the commit only). Nothing by default."""
        return nullcontext()

    def reconcile_for(self, delivery: Delivery) -> str:
        """How this delivery's unknown outcome is settled; the channel's way unless the delivery
        was sent without the provider's key (a WeCom app message without the duplicate check)."""
        return self.reconcile

    def provider_key(self, delivery: Delivery) -> str:
        """The idempotency key this provider is given for the delivery, "" if it takes none."""
        return ""

    def send(self, delivery: Delivery) -> DeliveryResult:
        raise NotImplementedError

    def prepare_steps(self, delivery: Delivery):
        """`prepare` as steps (channels/providers/http.py): HTTP backends yield their requests."""
        yield from ()
        return self.prepare(delivery)

    def prepare_chunk_steps(self, deliveries: list[Delivery]):
        """`prepare` for a whole chunk at once (channels/flight.py), as steps returning a result
        (or None) per delivery; None here: each delivery is prepared on its own."""
        return None

    # Provider-side batching (channels/flight.py): deliveries whose `batch_key` is the same (not
    # None) go in one request of at most `batch_limit` distinct addresses, each member keeping its
    # own attempt and result. A backend that batches gives `batch_provider_key` and
    # `send_batch_steps`; the others send one request per delivery.
    batch_limit: int = 1

    def batch_key(self, delivery: Delivery):
        """What makes this delivery's request identical to another's (None: it goes alone)."""
        return None

    def batch_address(self, delivery: Delivery) -> str:
        """The address as the provider counts it: one group never holds the same one twice."""
        return delivery.address

    def batch_provider_key(self, deliveries: list[Delivery]) -> str:
        """The key one batch's request carries, recorded on each member's attempt."""
        raise NotImplementedError

    def send_batch_steps(self, deliveries: list[Delivery], key: str):
        """One request for these deliveries (same `batch_key`, distinct addresses), as steps
        returning one result per delivery, in order."""
        raise NotImplementedError

    def send_steps(self, delivery: Delivery):
        """`send` as steps: what the event-loop path runs (channels/flight.py); a backend with no
        HTTP of its own (a test's recording backend) simply answers."""
        yield from ()
        return self.send(delivery)

    def query(self, delivery: Delivery) -> DeliveryResult | None:
        """Reconcile.QUERY: what the provider knows of this delivery's message. SENT (or a final
        failure) when it has a record, None when it has none; TRANSIENT when it could not say."""
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
        return DeliveryResult(AttemptOutcome.SKIPPED, "no_check", _("This channel has no connection check."))
