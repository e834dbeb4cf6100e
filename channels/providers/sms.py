"""SMS behind one channel; the account's provider says which service sends: Aliyun SendSms (RPC
API 2017-05-25, HMAC-SHA1 signature) or Tencent Cloud SendSms (API 2021-01-11, TC3-HMAC-SHA256).

Verification codes come from the one-time-code flow (POST /api/v1/otp): the delivery's content
holds only the code slot, and the code itself is put in at send time from its sealed copy on the
OtpCode row, which is erased once the provider has answered for good. A code slot with no live
code behind it is never sent as a placeholder.

Tencent SMS with the same account, template and parameters (never a code) go up to 200 numbers a
SendSms (`send_batch_steps`), the batch's SessionContext on each member's attempt; SendStatusSet
answers each number, and an unknown member is reconciled by its own number and that key."""

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import urlparse

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import AttemptKind, AttemptOutcome, Delivery, DeliveryAttempt
from ..otp import CODE_SLOT, otp_code_for_delivery, otp_code_spent
from ..routing import provider_side
from .base import CHINA, DeliveryResult, Reconcile, next_china_day, scrubbed
from .http import HttpBackend, ProviderHttpError, Steps, drive

__all__ = ["CODE_SLOT", "SmsBackend"]  # CODE_SLOT: what a code template renders where the code goes


def aliyun_daily_limit(code: str, message: str) -> bool:
    # isv.BUSINESS_LIMIT_CONTROL is one code for every flow control; the message names the level:
    # "触发分钟级流控Permits:1", "触发小时级流控Permits:5", "触发天级流控Permits:10".
    return code == "isv.BUSINESS_LIMIT_CONTROL" and "天级" in message


ALIYUN_TRANSIENT = {
    "isv.BUSINESS_LIMIT_CONTROL",  # "触发分钟级流控Permits:1" and the like: wait and retry
    "Throttling.User",
    "isp.SYSTEM_ERROR",
    "isp.RAM_PERMISSION_DENY",  # transient on Aliyun's side per their FAQ; bounded by max attempts
}

# Tencent Cloud: codes that are worth waiting for (rate limits, their side's trouble); every other
# code (FailedOperation.*, InvalidParameterValue.*, UnauthorizedOperation.*, AuthFailure.*) fails.
TENCENT_TRANSIENT_PREFIXES = ("LimitExceeded.", "InternalError", "RequestLimitExceeded", "ResourceUnavailable.")
# "调用接口单次提交的手机号个数超过200个，请遵守 API 接口输入参数 PhoneNumberSet 描述": a request of ours
# that no wait will mend.
TENCENT_NOT_TRANSIENT = {"LimitExceeded.PhoneNumberCountLimit"}
# SendSms, PhoneNumberSet: "单次请求最多支持200个手机号且要求全为境内手机号或全为境外手机号".
TENCENT_BATCH_LIMIT = 200
# Aliyun refuses a template variable longer than 35 characters (Tencent's limits are not longer).
SMS_PARAM_MAX = 35
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TENCENT_SERVICE = "sms"
TENCENT_VERSION = "2021-01-11"


_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]+")


def _escape(run: re.Match) -> str:
    return "".join([f"%{byte:02X}" for byte in run.group().encode()])


def _percent(value: str) -> str:
    # RFC 3986, as Aliyun's RPC signature requires: only A-Z a-z 0-9 - _ . ~ unescaped, every
    # other UTF-8 byte as %XX (upper case), as urllib's quote(value, safe="-_.~") does, which
    # looks up each character on its own: most of a SendSms's CPU.
    return _UNSAFE.sub(_escape, value)


def aliyun_canonical(params: dict) -> str:
    """The sorted parameters, each name and value percent-encoded (RFC 3986): what is signed."""
    return "&".join(f"{_percent(k)}={_percent(str(v))}" for k, v in sorted(params.items()))


def aliyun_signature(params: dict, secret: str, method: str = "GET") -> str:
    """Aliyun RPC signature (SignatureVersion 1.0, HMAC-SHA1) over the sorted parameters."""
    return _aliyun_sign(aliyun_canonical(params), secret, method)


def _aliyun_sign(canonical: str, secret: str, method: str) -> str:
    # The canonical string percent-encoded again: made of unreserved characters, %XX, "=" and "&"
    # only, so that is "%", "=" and "&" escaped ("%" first).
    again = canonical.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
    to_sign = f"{method}&{_percent('/')}&{again}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tc3_signature(
    *, secret_key: str, method: str, headers: dict, signed_headers: list[str], payload: bytes, timestamp: int
) -> str:
    """Tencent Cloud API 3.0's TC3-HMAC-SHA256 over a POST to "/" (checked against the official
    SDK's signer in tests/test_sms.py). `headers` are keyed in lower case."""
    canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed_headers)
    canonical_request = "\n".join([method, "/", "", canonical_headers, ";".join(signed_headers), _sha256_hex(payload)])
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{TENCENT_SERVICE}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{_sha256_hex(canonical_request.encode())}"

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = mac(mac(mac(f"TC3{secret_key}".encode(), date), TENCENT_SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def tencent_phone(address: str) -> str:
    """Tencent wants E.164 (+8613800000000); a bare mainland number gets +86."""
    return address if address.startswith("+") else f"+86{address}"


def tencent_outcome(code: str) -> str:
    if code.startswith(TENCENT_TRANSIENT_PREFIXES) and code not in TENCENT_NOT_TRANSIENT:
        return AttemptOutcome.TRANSIENT
    return AttemptOutcome.PERMANENT


# An Aliyun signature's review states other than approved (1), as the check reports them.
SIGN_STATES = {
    0: gettext_lazy("signature %(name)s is still under review"),
    2: gettext_lazy("signature %(name)s failed review:"),
    10: gettext_lazy("signature %(name)s: review cancelled"),
}


class SmsBackend(HttpBackend):
    channel = "sms"
    provider = "aliyun"
    # Neither provider drops a repeat; both can be asked what they sent to a number (query()).
    reconcile = Reconcile.QUERY
    # Tencent: one SendSms for up to 200 numbers with the same template and parameters.
    batch_limit = TENCENT_BATCH_LIMIT

    def provider_key(self, delivery: Delivery) -> str:
        return delivery.idempotency_key  # Aliyun OutId, Tencent SessionContext

    def batch_key(self, delivery: Delivery):
        """Tencent SMS of one account, template and parameter values batch together; a code
        (OTP) never does: its code is unsealed for one number, and its parameters are its own."""
        account = delivery.account
        if account is None or account.provider != "tencent" or not delivery.address:
            return None
        params = delivery.content.get("params") or {}
        if any(CODE_SLOT in str(v) for v in params.values()):
            return None
        return (
            account.pk,
            str(delivery.content.get("template_id", "")),
            tuple(str(v) for v in params.values()),
            # "要求全为境内手机号或全为境外手机号": mainland and other numbers never share a request.
            tencent_phone(delivery.address).startswith("+86"),
        )

    def batch_address(self, delivery: Delivery) -> str:
        return tencent_phone(delivery.address)

    def batch_provider_key(self, deliveries: list[Delivery]) -> str:
        """The batch's SessionContext: named after its first member, unique per request (a member
        tried again leads another batch). At most 115 characters (an idempotency key holds 100):
        within the attempt's provider_key (128) and Tencent's "注意长度需小于512字节"."""
        return f"b:{deliveries[0].idempotency_key}:{secrets.token_hex(6)}"

    public_base_urls = {"aliyun": "https://dysmsapi.aliyuncs.com", "tencent": "https://sms.tencentcloudapi.com"}

    def base_url(self, account) -> str:
        if account.sandbox:
            return settings.FAKE_PROVIDERS_URL.rstrip("/") + f"/{account.provider}"
        return (account.base_url or self.public_base_urls.get(account.provider, "")).rstrip("/")

    def send_steps(self, delivery: Delivery) -> Steps:
        return scrubbed((yield from self.send_code_or_text(delivery)), delivery)

    def send_code_or_text(self, delivery: Delivery) -> Steps:
        account = delivery.account
        if account is None:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No SMS account is configured.")
        send = {"aliyun": self.send_aliyun, "tencent": self.send_tencent}.get(account.provider)
        if send is None:
            return DeliveryResult(
                AttemptOutcome.PERMANENT, "provider_not_supported", f"No SMS backend for {account.provider!r}."
            )
        params = dict(delivery.content.get("params") or {})
        otp = None
        if any(CODE_SLOT in str(v) for v in params.values()):
            otp = otp_code_for_delivery(delivery)
            if otp.failure:
                return DeliveryResult(AttemptOutcome.PERMANENT, *otp.failure)
            params = {k: str(v).replace(CODE_SLOT, otp.code) for k, v in params.items()}
        result = yield from send(delivery, params)
        # A provider-side failure may fail over to the secondary account (channels/routing.py),
        # which needs the code; if it does not, the delivery's final state erases it.
        if (
            otp is not None
            and result.outcome not in (AttemptOutcome.TRANSIENT, AttemptOutcome.UNKNOWN)
            and not provider_side(result.code)
        ):
            otp_code_spent(otp.pk)  # answered for good: the sealed copy goes
        return result

    def query(self, delivery: Delivery) -> DeliveryResult | None:
        """What the provider recorded for this delivery's key on the day of its first unknown
        attempt: SENT, FAILED (its own words), None (no record), or TRANSIENT (could not ask)."""
        return scrubbed(self.query_record(delivery), delivery)

    def query_record(self, delivery: Delivery) -> DeliveryResult | None:
        account = delivery.account
        since = (
            DeliveryAttempt.objects.filter(delivery=delivery, kind=AttemptKind.SEND)
            .exclude(outcome=AttemptOutcome.PENDING)
            .order_by("started_at")
            .values_list("started_at", flat=True)
            .first()
        ) or delivery.created_at
        if account is None:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No SMS account is configured.")
        if account.provider == "aliyun":
            return self.query_aliyun(delivery, since)
        if account.provider == "tencent":
            return self.query_tencent(delivery, since)
        return DeliveryResult(AttemptOutcome.PERMANENT, "provider_not_supported", account.provider)

    def query_aliyun(self, delivery: Delivery, since: datetime) -> DeliveryResult | None:
        # QuerySendDetails: one number, one day (yyyyMMdd, the last 30 days), pages of at most 50;
        # each record carries our OutId. SendStatus 1 waiting for a receipt, 2 failed, 3 delivered.
        days = {since.astimezone(CHINA).strftime("%Y%m%d"), datetime.now(CHINA).strftime("%Y%m%d")}
        for day in sorted(days):
            page = 1
            while True:
                answer = self.aliyun_call(
                    delivery.account,
                    "QuerySendDetails",
                    {"PhoneNumber": delivery.address, "SendDate": day, "PageSize": 50, "CurrentPage": page},
                )
                if isinstance(answer, DeliveryResult):
                    return DeliveryResult(AttemptOutcome.TRANSIENT, answer.code, answer.message, answer.raw)
                if answer.get("Code") != "OK":
                    code, words = answer.get("Code", ""), answer.get("Message", "")
                    return DeliveryResult(AttemptOutcome.TRANSIENT, code, words, answer)
                records = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
                for record in records:
                    if record.get("OutId") == delivery.idempotency_key:
                        return _aliyun_record(record)
                if page * 50 >= int(answer.get("TotalCount") or 0) or not records:
                    break
                page += 1
        return None

    def query_tencent(self, delivery: Delivery, since: datetime) -> DeliveryResult | None:
        # PullSmsSendStatusByPhoneNumber pulls the status reports of one number since BeginTime
        # (at most 100 a call), each with our SessionContext. A message that has no status report
        # yet is not listed: RECONCILE_AFTER_SECONDS gives the report time to come first.
        begin = int(since.timestamp()) - 60
        keys = self.keys_sent(delivery)
        offset = 0
        while True:
            answer = self.tencent_call(
                delivery.account,
                "PullSmsSendStatusByPhoneNumber",
                {
                    "BeginTime": begin,
                    "EndTime": int(time.time()) + 60,
                    "Offset": offset,
                    "Limit": 100,
                    "PhoneNumber": tencent_phone(delivery.address),
                    "SmsSdkAppId": delivery.account.app_id,
                },
            )
            if isinstance(answer, DeliveryResult):
                return DeliveryResult(AttemptOutcome.TRANSIENT, answer.code, answer.message, answer.raw)
            response = answer.get("Response") or {}
            if response.get("Error"):
                error = response["Error"]
                return DeliveryResult(AttemptOutcome.TRANSIENT, error.get("Code", ""), error.get("Message", ""), answer)
            reports = response.get("PullSmsSendStatusSet") or []
            for report in reports:
                if report.get("SessionContext") in keys:
                    if report.get("ReportStatus") == "FAIL":
                        return DeliveryResult(
                            AttemptOutcome.PERMANENT, report.get("Description", "FAIL"), "status report: FAIL", report
                        )
                    serial = report.get("SerialNo", "")
                    return DeliveryResult(AttemptOutcome.SENT, raw=report, provider_message_id=serial)
            if len(reports) < 100:
                return None
            offset += 100

    @staticmethod
    def keys_sent(delivery: Delivery) -> set[str]:
        """Every SessionContext this delivery's sends carried: its own key, or a batch's (shared by
        the batch's numbers, but a number is in a batch once, so with the number it names one)."""
        keys = set(
            DeliveryAttempt.objects.filter(delivery=delivery, kind=AttemptKind.SEND)
            .exclude(provider_key="")
            .values_list("provider_key", flat=True)
        )
        return keys | {delivery.idempotency_key}

    def problems(self, content: dict) -> list[str]:
        found = [] if content.get("template_id") else ["no SMS template code"]
        for key, value in (content.get("params") or {}).items():
            text = str(value)
            if not text:
                found.append(f"{key}: empty")
            elif len(text) > SMS_PARAM_MAX and CODE_SLOT not in text:
                found.append(f"{key}: longer than {SMS_PARAM_MAX} characters: {text!r}")
        return found

    def check(self, account) -> DeliveryResult:
        """A signed read that touches no phone: Aliyun QuerySmsSign for the account's signature,
        Tencent SendStatusStatistics for its SMS app."""
        if account.provider == "aliyun":
            sign_name = (account.options or {}).get("sign_name", "")
            answer = self.aliyun_call(account, "QuerySmsSign", {"SignName": sign_name})
            if isinstance(answer, DeliveryResult):
                return answer
            if answer.get("Code") != "OK":
                return DeliveryResult(
                    AttemptOutcome.PERMANENT, answer.get("Code", ""), answer.get("Message", ""), answer
                )
            # SignStatus "0:审核中。1:审核通过。2:审核失败…10:取消审核。" (QuerySmsSign): only an
            # approved signature sends; any other state fails the check, with Aliyun's reason.
            status = answer.get("SignStatus")
            if status != 1:
                words = SIGN_STATES.get(status, _("signature %(name)s: status %(status)s")) % {
                    "name": sign_name,
                    "status": status,
                }
                reason = answer.get("Reason") or ""
                return DeliveryResult(
                    AttemptOutcome.PERMANENT, f"sign_status_{status}", f"{words} {reason}".strip(), answer
                )
            words = _("signature %(name)s approved") % {"name": sign_name}
            return DeliveryResult(AttemptOutcome.SENT, message=words, raw=answer)
        if account.provider == "tencent":
            # BeginTime and EndTime: "格式为yyyymmddhh，精确到小时，例如2021050113，表示2021年5月1号13时",
            # hours as Tencent's SMS console counts them, in China time: today there, not in UTC.
            today = datetime.now(CHINA).strftime("%Y%m%d")
            answer = self.tencent_call(
                account,
                "SendStatusStatistics",
                {
                    "SmsSdkAppId": account.app_id,
                    "BeginTime": f"{today}00",
                    "EndTime": f"{today}23",
                    "Limit": 0,
                    "Offset": 0,
                },
            )
            if isinstance(answer, DeliveryResult):
                return answer
            error = (answer.get("Response") or {}).get("Error")
            if error:
                return DeliveryResult(AttemptOutcome.PERMANENT, error.get("Code", ""), error.get("Message", ""), answer)
            words = _("SMS app %(app_id)s answered") % {"app_id": account.app_id}
            return DeliveryResult(AttemptOutcome.SENT, message=words, raw=answer)
        return DeliveryResult(
            AttemptOutcome.PERMANENT, "provider_not_supported", f"No SMS backend for {account.provider!r}."
        )

    def aliyun_call(self, account, action: str, params: dict) -> dict | DeliveryResult:
        """One blocking Aliyun call (queries, checks)."""
        return drive(self.aliyun_steps(account, action, params))

    def aliyun_steps(self, account, action: str, params: dict) -> Steps:
        query = {
            "AccessKeyId": account.app_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": (account.options or {}).get("region", "cn-hangzhou"),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": secrets.token_hex(16),
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            **params,
        }
        canonical = aliyun_canonical(query)
        signature = _aliyun_sign(canonical, (account.credentials or {}).get("access_key_secret", ""), "POST")
        # The form body is the signed string itself (RFC 3986 encoding is form encoding too), and
        # the signature: the parameters are encoded once, not again by urlencode.
        body = f"{canonical}&Signature={_percent(signature)}".encode()
        try:
            # POST, so that phone numbers and parameters (codes among them) stay out of URLs,
            # which proxies and access logs keep.
            return (yield self.call("POST", f"{self.base_url(account)}/", content=body, headers=FORM))
        except ProviderHttpError as err:
            return err.result

    def send_aliyun(self, delivery: Delivery, params: dict) -> Steps:
        account = delivery.account
        answer = yield from self.aliyun_steps(
            account,
            "SendSms",
            {
                "PhoneNumbers": delivery.address,
                "SignName": (account.options or {}).get("sign_name", ""),
                "TemplateCode": delivery.content.get("template_id", ""),
                "TemplateParam": json.dumps(params, ensure_ascii=False),
                "OutId": delivery.idempotency_key,
            },
        )
        if isinstance(answer, DeliveryResult):
            return answer
        code = answer.get("Code", "")
        if code == "OK":
            return DeliveryResult(AttemptOutcome.SENT, raw=answer, provider_message_id=answer.get("BizId", ""))
        outcome = AttemptOutcome.TRANSIENT if code in ALIYUN_TRANSIENT else AttemptOutcome.PERMANENT
        retry_at = next_china_day() if aliyun_daily_limit(code, answer.get("Message", "")) else None
        return DeliveryResult(outcome, code, answer.get("Message", ""), answer, retry_at=retry_at)

    def tencent_call(self, account, action: str, body: dict) -> dict | DeliveryResult:
        """One blocking Tencent Cloud call (queries, checks)."""
        return drive(self.tencent_steps(account, action, body))

    def tencent_steps(self, account, action: str, body: dict) -> Steps:
        credentials = account.credentials or {}
        url = f"{self.base_url(account)}/"
        payload = json.dumps(body, ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {"content-type": "application/json; charset=utf-8", "host": urlparse(url).netloc}
        signature = tc3_signature(
            secret_key=credentials.get("secret_key", ""),
            method="POST",
            headers=headers,
            signed_headers=["content-type", "host"],
            payload=payload,
            timestamp=timestamp,
        )
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        headers |= {
            "Authorization": (
                f"TC3-HMAC-SHA256 Credential={credentials.get('secret_id', '')}/{date}/{TENCENT_SERVICE}/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={signature}"
            ),
            "X-TC-Action": action,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": TENCENT_VERSION,
            "X-TC-Region": (account.options or {}).get("region", "ap-guangzhou"),
        }
        try:
            return (yield self.call("POST", url, content=payload, headers=headers))
        except ProviderHttpError as err:
            return err.result

    def send_tencent(self, delivery: Delivery, params: dict) -> Steps:
        account = delivery.account
        answer = yield from self.tencent_steps(
            account,
            "SendSms",
            {
                "PhoneNumberSet": [tencent_phone(delivery.address)],
                "SmsSdkAppId": account.app_id,
                "TemplateId": delivery.content.get("template_id", ""),
                "SignName": (account.options or {}).get("sign_name", ""),
                # Tencent's parameters are positional: the binding's params in the order written.
                "TemplateParamSet": [str(v) for v in params.values()],
                "SessionContext": delivery.idempotency_key,
            },
        )
        if isinstance(answer, DeliveryResult):
            return answer
        response = answer.get("Response") or {}
        error = response.get("Error")
        if error is None:
            error = (response.get("SendStatusSet") or [{}])[0]
        return _tencent_status(error, answer)

    def send_batch_steps(self, deliveries: list[Delivery], key: str) -> Steps:
        """One Tencent SendSms for every member (identical template and parameters, distinct
        numbers), SessionContext `key`; SendStatusSet answers each number, mapped back by its
        PhoneNumber. A request-level Error or a transport failure is every member's result."""
        first = deliveries[0]
        account = first.account
        phones = [tencent_phone(d.address) for d in deliveries]
        answer = yield from self.tencent_steps(
            account,
            "SendSms",
            {
                "PhoneNumberSet": phones,
                "SmsSdkAppId": account.app_id,
                "TemplateId": first.content.get("template_id", ""),
                "SignName": (account.options or {}).get("sign_name", ""),
                "TemplateParamSet": [str(v) for v in (first.content.get("params") or {}).values()],
                "SessionContext": key,
            },
        )
        return [scrubbed(result, d) for result, d in zip(_tencent_batch(answer, phones, key), deliveries, strict=True)]


def _tencent_status(status: dict, answer: dict) -> DeliveryResult:
    """One number's SendStatus (or the request's Error) as a result; `answer` is kept as raw."""
    code = status.get("Code", "") or "bad_response"
    if code == "Ok":
        return DeliveryResult(AttemptOutcome.SENT, raw=answer, provider_message_id=status.get("SerialNo", ""))
    # "LimitExceeded.PhoneNumberDailyLimit": the number's daily cap; tomorrow, not in minutes.
    retry_at = next_china_day() if code == "LimitExceeded.PhoneNumberDailyLimit" else None
    return DeliveryResult(tencent_outcome(code), code, status.get("Message", ""), answer, retry_at=retry_at)


def _tencent_batch(answer: dict | DeliveryResult, phones: list[str], key: str) -> list[DeliveryResult]:
    """A batch's answer, one result per number. Each member keeps only its own SendStatus (the
    others' numbers are not its to keep); a number the answer does not list was in a request
    Tencent took: unknown, reconciled by its status report."""
    if isinstance(answer, DeliveryResult):
        return [answer] * len(phones)
    response = answer.get("Response") or {}
    request_id = response.get("RequestId", "")
    if response.get("Error"):
        return [_tencent_status(response["Error"], answer)] * len(phones)
    by_phone = {s.get("PhoneNumber"): s for s in response.get("SendStatusSet") or [] if isinstance(s, dict)}
    results = []
    for phone in phones:
        status = by_phone.get(phone)
        if status is None:
            results.append(
                DeliveryResult(
                    AttemptOutcome.UNKNOWN,
                    "not_in_answer",
                    f"batch {key}: SendStatusSet does not list this number",
                    {"Response": {"RequestId": request_id}},
                )
            )
            continue
        own = {"Response": {"SendStatusSet": [status], "RequestId": request_id}, "batch": key}
        results.append(_tencent_status(status, own))
    return results


def _aliyun_record(record: dict) -> DeliveryResult:
    if int(record.get("SendStatus") or 0) == 2:  # the carrier refused it: final, in its words
        code = record.get("ErrCode", "") or "send_failed"
        return DeliveryResult(AttemptOutcome.PERMANENT, code, "SendStatus 2", record)
    return DeliveryResult(AttemptOutcome.SENT, raw=record, provider_message_id=record.get("BizId", "") or "")
