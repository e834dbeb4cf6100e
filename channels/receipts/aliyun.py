"""Aliyun SMS status reports (短信发送状态报告, SmsReport), pushed over HTTP in batches.

Aliyun posts a JSON array, each item with phone_number, send_time, report_time, success, err_code,
err_msg, sms_size, biz_id and out_id (our OutId: the delivery's idempotency key), and expects
`{"code": 0, "msg": "成功"}`; any other answer makes it push the batch again. Aliyun does not sign
the push: the URL carries our secret token (channels/receipts/common.py). A batch holding a report
older than MAX_REPORT_AGE_SECONDS is refused as a replay.
"""

from django.http import JsonResponse

from ..models import Channel, DeliveryStatus
from . import Receipt, Refused, too_old
from .common import check_url_token, china_time

CHANNELS = (Channel.SMS,)
ACCEPTED = {"code": 0, "msg": "成功"}


def authenticate(request, account) -> None:
    check_url_token(request, account)


def parse(body) -> list[Receipt]:
    """The batch as receipts; raises ValueError when it is not Aliyun's shape, Refused when old."""
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise ValueError("a JSON array of SmsReport objects is expected")
    receipts = []
    for item in body:
        at = china_time(item.get("report_time", ""))
        if too_old(at):
            raise Refused(f"report_time {item.get('report_time')} is too old: a replay")
        ok = item.get("success") in (True, "true")
        receipts.append(
            Receipt(
                status=DeliveryStatus.DELIVERED if ok else DeliveryStatus.UNDELIVERED,
                provider_message_id=str(item.get("biz_id", "")),
                our_key=str(item.get("out_id", "") or ""),
                code=str(item.get("err_code", "")),
                text=str(item.get("err_msg", "")),
                reported_at=at,
                raw={k: v for k, v in item.items() if k != "phone_number"},
            )
        )
    return receipts


def answer() -> JsonResponse:
    return JsonResponse(ACCEPTED, json_dumps_params={"ensure_ascii": False})
