"""JPush v3 push to app registration ids (the doctor and pharmacist apps): a notification for
Android and iOS with the message's deep link in `extras`. A `cid` from JPush's cid API is kept on
the delivery before the first try, so a retry carries the same cid and JPush never pushes twice."""

from datetime import timedelta

from ..models import AttemptOutcome, Delivery
from .base import DeliveryResult, Reconcile
from .http import HttpBackend, ProviderHttpError

TRANSIENT_CODES = {
    1030,  # "internal service timeout"
    2002,  # "Request times of the app_key exceed the limit of current time window"
}


class JPushBackend(HttpBackend):
    channel = "app_push"
    provider = "jpush"
    public_base_url = "https://api.jpush.cn"
    sandbox_prefix = "/jpush"
    # A push repeated with the same cid answers the first push's result and pushes nothing
    # (JPush "cid: 用于防止 api 调用端重试造成服务端的重复推送"); we trust it for a day.
    reconcile = Reconcile.DEDUP
    dedup_window = timedelta(days=1)

    def prepare(self, delivery: Delivery) -> DeliveryResult | None:
        """The cid is fetched (and kept on the delivery) before the attempt is recorded with it."""
        account = delivery.account
        secret = (account.credentials or {}).get("master_secret") if account else None
        if not secret or delivery.content.get("jpush_cid"):
            return None
        try:
            self._new_cid(delivery, (account.app_id, secret))
        except ProviderHttpError as err:
            return err.result
        return None

    def provider_key(self, delivery: Delivery) -> str:
        return delivery.content.get("jpush_cid", "")

    def send(self, delivery: Delivery) -> DeliveryResult:
        account = delivery.account
        secret = (account.credentials or {}).get("master_secret") if account else None
        if not secret:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No JPush app key and master secret.")
        auth = (account.app_id, secret)
        content = delivery.content
        try:
            cid = content.get("jpush_cid") or self._new_cid(delivery, auth)
            link = content.get("link") or {}
            extras = {
                k: v
                for k, v in {
                    "deep_link": link.get("app"),
                    "route": link.get("route"),
                    "params": link.get("params"),
                }.items()
                if v
            }
            body = {
                "cid": cid,
                "platform": "all",
                "audience": {"registration_id": [r for r in delivery.address.split(",") if r]},
                "notification": {
                    "android": {"alert": content.get("body", ""), "title": content.get("title", ""), "extras": extras},
                    "ios": {
                        "alert": {"title": content.get("title", ""), "body": content.get("body", "")},
                        "sound": "default",
                        "extras": extras,
                    },
                },
                "options": {
                    "apns_production": bool((account.options or {}).get("apns_production")),
                    "time_to_live": 86400,
                },
            }
            answer = self.request("POST", f"{self.base_url(account)}/v3/push", json=body, auth=auth)
        except ProviderHttpError as err:
            return err.result
        error = answer.get("error")
        if not error:
            return DeliveryResult(AttemptOutcome.SENT, raw=answer, provider_message_id=str(answer.get("msg_id", "")))
        code = int(error.get("code", 0))
        outcome = AttemptOutcome.TRANSIENT if code in TRANSIENT_CODES else AttemptOutcome.PERMANENT
        return DeliveryResult(outcome, str(code), error.get("message", ""), answer)

    def problems(self, content: dict) -> list[str]:
        # JPush: the whole notification within 4,000 bytes for iOS; the alert is most of it.
        size = len((content.get("title", "") + content.get("body", "")).encode())
        return [f"title and body are {size} bytes; a push carries at most 3,500"] if size > 3500 else []

    def check(self, account) -> DeliveryResult:
        """Asks for one push id (cid): authenticated, and it pushes nothing."""
        secret = (account.credentials or {}).get("master_secret")
        if not secret:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No JPush app key and master secret.")
        try:
            answer = self.request(
                "GET", f"{self.base_url(account)}/v3/push/cid", params={"count": 1}, auth=(account.app_id, secret)
            )
        except ProviderHttpError as err:
            return err.result
        if answer.get("cidlist"):
            return DeliveryResult(AttemptOutcome.SENT, message="app key and master secret accepted", raw=answer)
        error = answer.get("error") or {}
        return DeliveryResult(AttemptOutcome.PERMANENT, str(error.get("code", "")), error.get("message", ""), answer)

    def _new_cid(self, delivery: Delivery, auth) -> str:
        answer = self.request("GET", f"{self.base_url(delivery.account)}/v3/push/cid", params={"count": 1}, auth=auth)
        if not answer.get("cidlist"):
            error = answer.get("error") or {}
            raise ProviderHttpError(
                DeliveryResult(
                    AttemptOutcome.PERMANENT, str(error.get("code", "no_cid")), error.get("message", ""), answer
                )
            )
        cid = answer["cidlist"][0]
        delivery.content = {**delivery.content, "jpush_cid": cid}
        Delivery.objects.filter(pk=delivery.pk).update(content=delivery.content)
        return cid
