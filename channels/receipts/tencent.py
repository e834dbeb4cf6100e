"""Tencent Cloud SMS status callbacks (短信下发状态回调), pushed over HTTP in batches.

Tencent posts a JSON array, each item with user_receive_time, nationcode, mobile, report_status
(SUCCESS or FAIL), errmsg (the carrier's code, e.g. DELIVRD), description, sid (the SerialNo of
SendSms) and ext (the SessionContext we sent: the delivery's idempotency key, or a batch's key
that the mobile number completes), and expects
`{"result": 0, "errmsg": "OK"}`. Tencent does not sign the callback: the URL carries our secret
token (channels/receipts/common.py). Reports older than MAX_REPORT_AGE_SECONDS are refused as a
replay.
"""

from django.http import JsonResponse

from ..models import Channel, DeliveryStatus
from . import Receipt, Refused, too_old
from .common import check_url_token, china_time

CHANNELS = (Channel.SMS,)
ACCEPTED = {"result": 0, "errmsg": "OK"}


def authenticate(request, account) -> None:
    check_url_token(request, account)


def parse(body) -> list[Receipt]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise ValueError("a JSON array of status reports is expected")
    receipts = []
    for item in body:
        at = china_time(item.get("user_receive_time", ""))
        if too_old(at):
            raise Refused(f"user_receive_time {item.get('user_receive_time')} is too old: a replay")
        ok = item.get("report_status") == "SUCCESS"
        receipts.append(
            Receipt(
                status=DeliveryStatus.DELIVERED if ok else DeliveryStatus.UNDELIVERED,
                provider_message_id=str(item.get("sid", "")),
                our_key=str(item.get("ext", "") or ""),
                code=str(item.get("errmsg", "")),
                text=str(item.get("description", "")),
                reported_at=at,
                raw={k: v for k, v in item.items() if k != "mobile"},
                address=_e164(item),
            )
        )
    return receipts


def _e164(item: dict) -> str:
    mobile = str(item.get("mobile", "") or "")
    return f"+{item.get('nationcode') or '86'}{mobile}" if mobile else ""


def answer() -> JsonResponse:
    return JsonResponse(ACCEPTED)
