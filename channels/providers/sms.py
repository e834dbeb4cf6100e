"""SMS behind one channel; the account's provider says which service sends. Aliyun SendSms (RPC
API 2017-05-25, HMAC-SHA1 signature) is built; Tencent Cloud SendSms is not yet.

Verification codes go through the one-time-code flow (POST /api/v1/otp, not built yet): a
template whose parameters still hold the code slot is refused here, never sent with a
placeholder where a patient expects digits."""

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from urllib.parse import quote

from ..models import AttemptOutcome, Delivery
from .base import DeliveryResult
from .http import HttpBackend, ProviderHttpError

# What a verification-code template renders where the code goes (scenarios fills it in);
# the one-time-code flow puts the real code there at send time.
CODE_SLOT = "{code}"
ALIYUN_TRANSIENT = {
    "isv.BUSINESS_LIMIT_CONTROL",  # "触发分钟级流控Permits:1" and the like: wait and retry
    "Throttling.User",
    "isp.SYSTEM_ERROR",
    "isp.RAM_PERMISSION_DENY",  # transient on Aliyun's side per their FAQ; bounded by max attempts
}


def _percent(value: str) -> str:
    # RFC 3986, as Aliyun's RPC signature requires: only A-Z a-z 0-9 - _ . ~ unescaped.
    return quote(value, safe="-_.~")


def aliyun_signature(params: dict, secret: str, method: str = "GET") -> str:
    """Aliyun RPC signature (SignatureVersion 1.0, HMAC-SHA1) over the sorted parameters."""
    canonical = "&".join(f"{_percent(k)}={_percent(str(v))}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_percent('/')}&{_percent(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class SmsBackend(HttpBackend):
    channel = "sms"
    provider = "aliyun"
    public_base_url = "https://dysmsapi.aliyuncs.com"
    sandbox_prefix = "/aliyun"

    def send(self, delivery: Delivery) -> DeliveryResult:
        account = delivery.account
        if account is None:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No SMS account is configured.")
        params = delivery.content.get("params") or {}
        if any(CODE_SLOT in str(v) for v in params.values()):
            return DeliveryResult(
                AttemptOutcome.SKIPPED,
                "otp_not_implemented",
                "Verification codes are sent through the one-time-code flow, which is not built yet.",
            )
        if account.provider != "aliyun":
            return DeliveryResult(
                AttemptOutcome.SKIPPED, "provider_not_implemented", f"No SMS backend for {account.provider} yet."
            )
        return self.send_aliyun(delivery, params)

    def send_aliyun(self, delivery: Delivery, params: dict) -> DeliveryResult:
        account = delivery.account
        query = {
            "AccessKeyId": account.app_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": delivery.address,
            "RegionId": (account.options or {}).get("region", "cn-hangzhou"),
            "SignName": (account.options or {}).get("sign_name", ""),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": secrets.token_hex(16),
            "SignatureVersion": "1.0",
            "TemplateCode": delivery.content.get("template_id", ""),
            "TemplateParam": json.dumps(params, ensure_ascii=False),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            "OutId": delivery.idempotency_key,
        }
        query["Signature"] = aliyun_signature(query, (account.credentials or {}).get("access_key_secret", ""))
        try:
            answer = self.request("GET", f"{self.base_url(account)}/", params=query)
        except ProviderHttpError as err:
            return err.result
        code = answer.get("Code", "")
        if code == "OK":
            return DeliveryResult(AttemptOutcome.SENT, raw=answer, provider_message_id=answer.get("BizId", ""))
        outcome = AttemptOutcome.TRANSIENT if code in ALIYUN_TRANSIENT else AttemptOutcome.PERMANENT
        return DeliveryResult(outcome, code, answer.get("Message", ""), answer)
