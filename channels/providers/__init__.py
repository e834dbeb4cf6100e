"""Provider backends, one module each, picked by channel (and the account's provider).

A channel with no backend yet is not silently dropped: its deliveries end as skipped with the
reason `channel_not_implemented`, visible in the admin.
"""

from .base import Backend, DeliveryResult
from .inbox import InboxBackend

BACKENDS: dict[str, type[Backend]] = {
    InboxBackend.channel: InboxBackend,
}


def backend_for(channel: str) -> Backend | None:
    cls = BACKENDS.get(channel)
    return cls() if cls else None


__all__ = ["Backend", "DeliveryResult", "backend_for"]
