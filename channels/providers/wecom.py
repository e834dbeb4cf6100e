"""WeCom (企业微信) group robot: a webhook per group, markdown or text. A robot takes 20 messages
a minute ("api freq out of limit" past it): its account's rate limit keeps deliveries waiting in
the outbox, never dropped."""

from datetime import timedelta

from ..models import AttemptOutcome, Delivery
from .base import DeliveryResult, Reconcile
from .http import HttpBackend, ProviderHttpError
from .tokened import TokenBackend

TRANSIENT_CODES = {
    -1,  # "system busy"
    45009,  # "api freq out of limit"
}
ROBOT_PER_MINUTE = 20


def markdown(content: dict) -> str:
    lines = [f"**{content.get('title', '')}**", content.get("body", "")]
    url = (content.get("link") or {}).get("h5")
    if url:
        lines.append(f"[查看详情]({url})")
    return "\n".join(lines)


class WeComRobotBackend(HttpBackend):
    channel = "wecom_robot"
    provider = "wecom"
    public_base_url = "https://qyapi.weixin.qq.com"
    sandbox_prefix = "/wecom"
    reconcile = Reconcile.NONE  # a webhook post has no key and no query

    def send(self, delivery: Delivery) -> DeliveryResult:
        account = delivery.account
        content = delivery.content
        options = content.get("options") or {}
        if options.get("msgtype") == "text":
            body = {
                "msgtype": "text",
                "text": {
                    "content": f"{content.get('title', '')}\n{content.get('body', '')}",
                    "mentioned_mobile_list": options.get("mentioned_mobile_list", []),
                },
            }
        else:
            body = {"msgtype": "markdown", "markdown": {"content": markdown(content)}}
        return self.post_robot(account, body)

    def problems(self, content: dict) -> list[str]:
        size = len(markdown(content).encode())
        return [f"markdown is {size} bytes; a robot takes at most 4096"] if size > 4096 else []

    def check(self, account) -> DeliveryResult:
        """A group robot has no read-only call: the check posts one short text to its group."""
        return self.post_robot(account, {"msgtype": "text", "text": {"content": "【通知中心】连接测试，请忽略。"}})

    def post_robot(self, account, body: dict) -> DeliveryResult:
        key = (account.credentials or {}).get("robot_key") if account else None
        if not key:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No WeCom robot key is configured.")
        try:
            answer = self.request(
                "POST", f"{self.base_url(account)}/cgi-bin/webhook/send", params={"key": key}, json=body
            )
        except ProviderHttpError as err:
            return err.result
        errcode = int(answer.get("errcode", 0))
        if errcode == 0:
            return DeliveryResult(AttemptOutcome.SENT, raw=answer)
        outcome = AttemptOutcome.TRANSIENT if errcode in TRANSIENT_CODES else AttemptOutcome.PERMANENT
        return DeliveryResult(outcome, str(errcode), answer.get("errmsg", ""), answer)


class WeComAppBackend(TokenBackend):
    """An app message (message/send) to a staff member's WeCom user id, with WeCom's duplicate check
    so that a retried delivery is not shown twice."""

    channel = "wecom_app"
    provider = "wecom"
    public_base_url = "https://qyapi.weixin.qq.com"
    sandbox_prefix = "/wecom"
    token_path = "/cgi-bin/gettoken"  # noqa: S105 (a URL path, not a secret)
    token_codes = frozenset({40014, 42001})  # "invalid access_token", "access_token expired"
    transient_codes = frozenset(TRANSIENT_CODES)
    # The duplicate check (same user, same content, within duplicate_check_interval) is the key.
    reconcile = Reconcile.DEDUP
    dedup_window = timedelta(seconds=1800)

    def token_params(self, account) -> dict:
        return {"corpid": account.app_id, "corpsecret": (account.credentials or {}).get("corp_secret", "")}

    def send(self, delivery: Delivery) -> DeliveryResult:
        account = delivery.account
        agentid = (account.options or {}).get("agentid") if account else None
        if not agentid:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No WeCom app (agentid) is configured.")
        body = {
            "touser": delivery.address,
            "msgtype": "markdown",
            "agentid": int(agentid),
            "markdown": {"content": markdown(delivery.content)},
            "enable_duplicate_check": 1,
            "duplicate_check_interval": 1800,
        }
        result = self.post_with_token(account, "/cgi-bin/message/send", body)
        if result.outcome == AttemptOutcome.SENT and delivery.address in (result.raw.get("invaliduser") or "").split(
            "|"
        ):
            # WeCom answers "ok" but names the user it could not reach.
            return DeliveryResult(
                AttemptOutcome.PERMANENT, "invalid_user", f"invaliduser: {delivery.address}", result.raw
            )
        return result
