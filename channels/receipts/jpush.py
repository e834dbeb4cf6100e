"""JPush receipts, pulled: JPush reports arrival per push (`GET /v3/received/detail?msg_ids=`, at
most 100 ids a call, on report.jpush.cn, HTTP Basic with the app key and master secret), as
counts per platform: android_received, ios_apns_received (handed to APNs and acknowledged),
ios_msg_received. A push whose counts are above zero reached a phone: `delivered`. JPush keeps
these for pushes of the last days; we ask about pushes sent in the last 24 hours that have not
reported yet, from a beat task (channels/receipts/pull.py)."""

import base64
import json
from urllib.parse import urlencode

import urllib3

from ..models import Channel, DeliveryStatus
from ..providers import backend_for
from ..providers.http import http, timeout
from . import Receipt

CHANNELS = (Channel.APP_PUSH,)
PUBLIC_REPORT_URL = "https://report.jpush.cn"
IDS_PER_CALL = 100


def report_url(account) -> str:
    backend = backend_for(Channel.APP_PUSH)
    if account.sandbox or account.base_url:
        return backend.base_url(account)
    return PUBLIC_REPORT_URL


def _received(account, msg_ids: list[str]) -> list[dict]:
    """One call to the report API. It answers a JSON array, which the providers' shared request
    refuses (every send API answers an object), so the call is made here, on the same pool."""
    secret = (account.credentials or {}).get("master_secret", "")
    token = base64.b64encode(f"{account.app_id}:{secret}".encode()).decode()
    url = f"{report_url(account)}/v3/received/detail?{urlencode({'msg_ids': ','.join(msg_ids)})}"
    try:
        answer = http().request("GET", url, headers={"Authorization": f"Basic {token}"}, timeout=timeout())
    except urllib3.exceptions.HTTPError:
        return []  # asked again on the next run
    try:
        items = json.loads(answer.data) if answer.status == 200 else []
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def pull(account, msg_ids: list[str]) -> list[Receipt]:
    """Ask about these pushes; the ones some phone received come back as receipts."""
    receipts = []
    for start in range(0, len(msg_ids), IDS_PER_CALL):
        for item in _received(account, msg_ids[start : start + IDS_PER_CALL]):
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
