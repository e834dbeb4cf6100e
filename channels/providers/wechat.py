"""WeChat: mini-program subscribe messages (subscribeMessage.send) and official-account
template messages (message/template/send), over plain HTTP (channels/providers/http.py).

wechatpy 1.8.18 (the last release, 2021) lacks `miniprogram_state` and `lang` on
subscribeMessage.send and `client_msg_id` on template sends, and has no cross-process lock for
token refreshes; this module needs all three.
"""

import re
from datetime import timedelta

from django.db import transaction
from django.db.models import F

from ..clicks import tracked_url
from ..models import AttemptOutcome, ChannelAccount, Delivery, SubscribeConsent
from .base import DeliveryResult, Reconcile
from .http import Steps
from .tokened import TokenBackend

# errcode → outcome. The words are the provider's own (errmsg), kept on every attempt.
TOKEN_CODES = {40001, 40014, 42001}  # "invalid credential", "invalid access_token", "access_token expired"
TRANSIENT_CODES = {
    -1,  # "system error"
    45009,  # "reach max api daily quota limit"
    45011,  # "api minute-quota reach limit"
}
PERMANENT_CODES = {
    40003,  # "invalid openid"
    40013,  # "invalid appid"
    40037,  # "invalid template_id"
    40125,  # "invalid appsecret"
    41030,  # "invalid page"
    43004,  # "require subscribe" (not following the official account)
    43101,  # "user refuse to accept the msg" (no subscription consent)
    47003,  # "argument invalid"
}


# Subscribe-message parameter types: key prefix → (max length, pattern or None, may be truncated).
PARAM_TYPES = {
    "thing": (20, None, True),
    "character_string": (32, re.compile(r"^[0-9A-Za-z_\-.:#/@]+$"), False),
    "number": (32, re.compile(r"^\d+(\.\d+)?$"), False),
    "letter": (32, re.compile(r"^[A-Za-z]+$"), False),
    "symbol": (5, None, False),
    "time": (30, None, False),
    "date": (30, None, False),
    "amount": (12, re.compile(r"^[¥￥]?\d+(\.\d{1,2})?元?$"), False),
    "phone_number": (17, re.compile(r"^[\d+\-() ]+$"), False),
    "car_number": (8, None, False),
    "name": (10, None, True),
    "phrase": (5, re.compile(r"^[\u4e00-\u9fff]+$"), False),
}
_PREFIX = re.compile(r"^([a-z_]+?)\d+$")


class InvalidParam(Exception):
    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def checked_params(params: dict, *, truncate: bool) -> dict:
    """Each value against its key's WeChat type (thing1 → thing ≤ 20 characters, …); a value too
    long is cut with an ellipsis where the binding allows and the type permits, else refused."""
    out = {}
    for key, raw in params.items():
        value = str(raw)
        match = _PREFIX.match(key)
        rule = PARAM_TYPES.get(match.group(1)) if match else None
        if rule is not None:
            limit, pattern, cuttable = rule
            if not value:
                raise InvalidParam(key, "empty")
            if len(value) > limit:
                if not (truncate and cuttable):
                    raise InvalidParam(key, f"longer than {limit} characters: {value!r}")
                value = value[: limit - 1] + "…"
            if pattern is not None and not pattern.match(value):
                raise InvalidParam(key, f"not a valid {match.group(1)}: {value!r}")
        out[key] = {"value": value}
    return out


class WeChatBackend(TokenBackend):
    provider = "wechat"
    public_base_url = "https://api.weixin.qq.com"
    sandbox_prefix = "/wechat"
    token_path = "/cgi-bin/stable_token"  # noqa: S105 (a URL path, not a secret)
    token_codes = frozenset(TOKEN_CODES)
    transient_codes = frozenset(TRANSIENT_CODES)
    daily_quota_codes = frozenset({45009})  # "reach max api daily quota limit"
    send_path = ""

    def body(self, delivery: Delivery, data: dict) -> dict:
        raise NotImplementedError

    def send_steps(self, delivery: Delivery) -> Steps:
        account = delivery.account
        if account is None:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", f"No {self.channel} account is configured.")
        content = delivery.content
        try:
            data = checked_params(
                content.get("params") or {}, truncate=bool((content.get("options") or {}).get("truncate"))
            )
        except InvalidParam as err:
            return DeliveryResult(AttemptOutcome.PERMANENT, "invalid_param", str(err), {"key": err.key})
        return (yield from self.post_with_token(account, self.send_path, self.body(delivery, data)))

    def problems(self, content: dict) -> list[str]:
        found = [] if content.get("template_id") else ["no WeChat template id"]
        try:
            checked_params(content.get("params") or {}, truncate=bool((content.get("options") or {}).get("truncate")))
        except InvalidParam as err:
            found.append(str(err))
        if not content.get("params"):
            found.append("no template parameters")
        return found

    def token_params(self, account: ChannelAccount) -> dict:
        return {
            "grant_type": "client_credential",
            "appid": account.app_id,
            "secret": account.credentials.get("app_secret", ""),
            # getStableAccessToken, normal mode: "access_token 有效期内重复调用该接口不会更新
            # access_token", and it is "与 getAccessToken 获取的调用凭证完全隔离，互不影响". The hospital's
            # other systems on this AppID keep their tokens whatever this center does. Never true,
            # not even for the admin's connection test: force_refresh "会导致上次获取的 access_token
            # 失效" for every system sharing the stable token, and is limited to 20 a day. Normal
            # mode proves the AppID and secret just as well (a wrong secret is 40125 either way).
            "force_refresh": False,
        }

    def fetch_token(self, account: ChannelAccount) -> tuple[str, int]:
        """POST /cgi-bin/stable_token with a JSON body (the endpoint takes no query parameters)."""
        answer = self.request("POST", f"{self.base_url(account)}{self.token_path}", json=self.token_params(account))
        return self.token_from(answer)


class OfficialAccountTemplateBackend(WeChatBackend):
    """message/template/send to a follower of the official account (服务号)."""

    channel = "wechat_oa_template"
    send_path = "/cgi-bin/message/template/send"
    # "client_msg_id: 防重入id。对于同一个openid + client_msg_id，只发送一条消息，10分钟有效，超过10分钟
    # 不保证效果" (message/template/send): a resend with the same id inside 10 minutes is safe.
    reconcile = Reconcile.DEDUP
    dedup_window = timedelta(minutes=10)

    def provider_key(self, delivery: Delivery) -> str:
        return delivery.idempotency_key

    def body(self, delivery: Delivery, data: dict) -> dict:
        link = delivery.content.get("link") or {}
        body = {
            "touser": delivery.address,
            "template_id": delivery.content.get("template_id", ""),
            "data": data,
            "client_msg_id": delivery.idempotency_key,  # WeChat drops a repeat of the same id
        }
        mini_appid = (delivery.account.options or {}).get("miniprogram_appid")
        if mini_appid and link.get("mini_program"):
            body["miniprogram"] = {"appid": mini_appid, "pagepath": link["mini_program"].lstrip("/")}
        elif link.get("h5"):
            body["url"] = tracked_url(delivery, "h5", link["h5"])  # through /r/ when tracking is on
        return body


class MiniProgramSubscribeBackend(WeChatBackend):
    """subscribeMessage.send; only while the person holds a consent for the template, one per send."""

    channel = "wechat_mini_subscribe"
    send_path = "/cgi-bin/message/subscribe/send"
    # subscribeMessage.send takes no idempotency key and has no query: an unknown outcome stays
    # unknown (channels/reconcile.py), unless the binding says at least once.
    reconcile = Reconcile.NONE

    def body(self, delivery: Delivery, data: dict) -> dict:
        link = delivery.content.get("link") or {}
        options = delivery.account.options or {}
        body = {
            "touser": delivery.address,
            "template_id": delivery.content.get("template_id", ""),
            "data": data,
            "miniprogram_state": options.get("miniprogram_state", "formal"),
            "lang": options.get("lang", "zh_CN"),
        }
        if link.get("mini_program"):
            body["page"] = link["mini_program"].lstrip("/")
        return body

    def send_steps(self, delivery: Delivery) -> Steps:
        template_id = delivery.content.get("template_id", "")
        with transaction.atomic():
            taken = SubscribeConsent.objects.filter(
                recipient_id=delivery.recipient_id, template_id=template_id, remaining__gt=0
            ).update(remaining=F("remaining") - 1)
        if not taken:
            return DeliveryResult(
                AttemptOutcome.SKIPPED, "no_consent", f"No subscribe consent left for the template {template_id}."
            )
        result = yield from super().send_steps(delivery)
        if result.outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.TOKEN_EXPIRED) or result.code == "invalid_param":
            # Not used by WeChat: give the consent back for the retry (or a corrected template).
            SubscribeConsent.objects.filter(recipient_id=delivery.recipient_id, template_id=template_id).update(
                remaining=F("remaining") + 1
            )
        return result
