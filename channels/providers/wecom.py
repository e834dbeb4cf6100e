"""WeCom (企业微信) group robot: a webhook per group, markdown or text. A robot takes 20 messages
a minute ("api freq out of limit" past it): its account's rate limit keeps deliveries waiting in
the outbox, never dropped."""

from ..models import AttemptOutcome, Delivery
from .base import DeliveryResult
from .http import HttpBackend, ProviderHttpError

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

    def send(self, delivery: Delivery) -> DeliveryResult:
        account = delivery.account
        key = (account.credentials or {}).get("robot_key") if account else None
        if not key:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No WeCom robot key is configured.")
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
