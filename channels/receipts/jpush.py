"""JPush receipts, pulled: JPush reports arrival per push (`GET /v3/received/detail?msg_ids=`, at
most 100 ids a call, on report.jpush.cn, HTTP Basic with the app key and master secret), as
counts per platform: android_received, ios_apns_received (handed to APNs and acknowledged),
ios_msg_received. A push whose counts are above zero reached a phone: `delivered`. JPush keeps
these for pushes of the last days; we ask about pushes sent in the last 24 hours that have not
reported yet, from a beat task (channels/receipts/pull.py)."""

from ..models import Channel, DeliveryStatus
from ..providers import backend_for
from ..providers.http import ProviderHttpError
from . import Receipt

CHANNELS = (Channel.APP_PUSH,)
PUBLIC_REPORT_URL = "https://report.jpush.cn"
IDS_PER_CALL = 100


def report_url(account) -> str:
    backend = backend_for(Channel.APP_PUSH)
    if account.sandbox or account.base_url:
        return backend.base_url(account)
    return PUBLIC_REPORT_URL


def pull(account, msg_ids: list[str]) -> list[Receipt]:
    """Ask about these pushes; the ones some phone received come back as receipts."""
    backend = backend_for(Channel.APP_PUSH)
    secret = (account.credentials or {}).get("master_secret", "")
    receipts = []
    for start in range(0, len(msg_ids), IDS_PER_CALL):
        chunk = msg_ids[start : start + IDS_PER_CALL]
        try:
            answer = backend.request(
                "GET",
                f"{report_url(account)}/v3/received/detail",
                params={"msg_ids": ",".join(chunk)},
                auth=(account.app_id, secret),
            )
        except ProviderHttpError:
            continue  # asked again on the next run
        for item in answer if isinstance(answer, list) else []:
            received = sum(int(item.get(k) or 0) for k in ("android_received", "ios_apns_received", "ios_msg_received"))
            if received:
                receipts.append(
                    Receipt(
                        status=DeliveryStatus.DELIVERED,
                        provider_message_id=str(item.get("msg_id", "")),
                        code="received",
                        text=f"received on {received} device(s)",
                        raw=item,
                    )
                )
    return receipts
