"""The callback endpoints, `/api/v1/callbacks/<provider>/<account id>`: thin, one path for all.

A call is authenticated as its provider documents (the provider's module), or refused with 401
and recorded; its receipts are kept and applied; the answer is the one the provider expects, so
it stops pushing the batch. A body that is not the provider's shape is a 400 with a stable code.
"""

import json
import logging

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from ..models import ChannelAccount, Provider
from . import Refused, aliyun, receipt_refused, receipts_apply, tencent, wechat

logger = logging.getLogger(__name__)

MODULES = {Provider.ALIYUN: aliyun, Provider.TENCENT: tencent, Provider.WECHAT: wechat}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "fields": {}}, status=status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def callback(request, provider: str, account_id: int) -> HttpResponse:
    module = MODULES.get(provider)
    account = ChannelAccount.objects.filter(pk=account_id, provider=provider).first()
    if module is None or account is None:
        return _error(404, "not_found", "No such provider account.")
    try:
        module.authenticate(request, account)
        if request.method == "GET":
            if provider != Provider.WECHAT:
                return _error(405, "method_not_allowed", "Receipts are POSTed.")
            return wechat.handshake(request)
        if module is wechat:
            receipts = wechat.parse(request, account)
        else:
            receipts = module.parse(json.loads(request.body or b"null"))
    except Refused as refused:
        logger.warning("callback %s/%s refused: %s", provider, account_id, refused.reason)
        receipt_refused(provider=provider, account=account, reason=refused.reason, request=request)
        return _error(401, "callback_refused", refused.reason)
    except (ValueError, SyntaxError) as err:  # json.JSONDecodeError and ET.ParseError are among these
        return _error(400, "invalid_receipt", str(err)[:200])
    receipts_apply(provider=provider, account=account, receipts=receipts, channels=module.CHANNELS)
    return module.answer()
