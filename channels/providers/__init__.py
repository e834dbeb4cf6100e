"""Provider backends, one module each, picked by channel (and the account's provider).

A channel with no backend yet is not silently dropped: its deliveries end as skipped with the
reason `channel_not_implemented`, visible in the admin.
"""

from .base import Backend, DeliveryResult, Reconcile
from .inbox import InboxBackend
from .jpush import JPushBackend
from .sms import SmsBackend
from .wechat import MiniProgramSubscribeBackend, OfficialAccountTemplateBackend
from .wecom import WeComAppBackend, WeComRobotBackend

BACKENDS: dict[str, type[Backend]] = {
    backend.channel: backend
    for backend in (
        InboxBackend,
        OfficialAccountTemplateBackend,
        MiniProgramSubscribeBackend,
        WeComRobotBackend,
        WeComAppBackend,
        JPushBackend,
        SmsBackend,
    )
}


def backend_for(channel: str) -> Backend | None:
    cls = BACKENDS.get(channel)
    return cls() if cls else None


__all__ = ["Backend", "DeliveryResult", "Reconcile", "backend_for"]
