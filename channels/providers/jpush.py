"""JPush v3 push to app registration ids (the doctor and pharmacist apps): a notification for
Android and iOS with the message's deep link in `extras`. A `cid` from JPush's cid API is kept on
the delivery before the first try, so a retry carries the same cid and JPush never pushes twice.

Vendor channels: the push says it is a service message (`options.classification` 1) and carries
each vendor's fields for one (`options.third_party_channel`), from the account's options with the
binding's options on top (a binding reaches the delivery as `content["options"]`). Without them
Xiaomi, Huawei, OPPO and vivo treat a transactional push as marketing and cap it at a few a day.
"""

from datetime import timedelta

from django.utils.translation import gettext as _

from ..models import AttemptOutcome, Delivery
from ..rows import column_update
from .base import DeliveryResult, Reconcile
from .http import HttpBackend, ProviderHttpError, Steps

# Cids per call to the cid API: 10 for an app that is not VIP (JPush's limit), 1,000 for a VIP one.
CID_BATCH = 10
CID_BATCH_VIP = 1000
TRANSIENT_CODES = {
    1030,  # "internal service timeout"
    2002,  # "Request times of the app_key exceed the limit of current time window"
}

# JPush push API v3, options (docs.jiguang.cn/jpush/server/push/rest_api_v3_push):
# classification "0 代表运营消息，1 代表系统消息" (JPush's vendor guide: "建议使用 API 下发时，设置
# options.classification 为 1" for Xiaomi's private-message quota); third_party_channel, per vendor:
# Xiaomi channel_id; Huawei importance (LOW/NORMAL/HIGH) and category; Honor importance
# (LOW/NORMAL); OPPO channel_id, category and notify_level (1, 2, 16); vivo classification (0
# operations, 1 system) and category. A string field must not be empty.
SERVICE_CLASSIFICATION = 1
VENDOR_FIELDS = {
    "xiaomi": {"channel_id": str},
    "huawei": {"importance": ("LOW", "NORMAL", "HIGH"), "category": str},
    "honor": {"importance": ("LOW", "NORMAL")},
    "oppo": {"channel_id": str, "category": str, "notify_level": (1, 2, 16)},
    "vivo": {"classification": (0, 1), "category": str},
}
PUSH_OPTION_KEYS = ("classification", "third_party_channel")


def push_options(account_options: dict, binding_options: dict) -> dict:
    """classification and third_party_channel for one push: the account's, each vendor's fields
    overridden one by one by the binding's; a service message (1) unless either says otherwise."""
    account_options = account_options or {}
    binding_options = binding_options or {}
    classification = binding_options.get("classification", account_options.get("classification"))
    vendors: dict = {}
    for source in (account_options.get("third_party_channel"), binding_options.get("third_party_channel")):
        for vendor, fields in (source or {}).items():
            vendors[vendor] = {**vendors.get(vendor, {}), **(fields or {})}
    options = {"classification": SERVICE_CLASSIFICATION if classification is None else classification}
    if vendors:
        options["third_party_channel"] = vendors
    return options


def push_option_problems(options: dict) -> list[str]:
    """What JPush would refuse in these push options, named by field."""
    found = []
    if options.get("classification") not in (0, 1):
        found.append(f"options.classification must be 0 or 1, not {options.get('classification')!r}")
    vendors = options.get("third_party_channel") or {}
    if not isinstance(vendors, dict):
        return [*found, "options.third_party_channel must be an object of vendors"]
    for vendor, fields in vendors.items():
        rules = VENDOR_FIELDS.get(vendor)
        if not isinstance(fields, dict):
            found.append(f"options.third_party_channel.{vendor} must be an object")
            continue
        for name, value in fields.items():
            rule = (rules or {}).get(name)
            if rule is str and not (isinstance(value, str) and value):
                found.append(f"options.third_party_channel.{vendor}.{name} must be a non-empty string")
            elif isinstance(rule, tuple) and value not in rule:
                allowed = ", ".join(map(str, rule))
                found.append(f"options.third_party_channel.{vendor}.{name} must be one of {allowed}, not {value!r}")
    return found


class JPushBackend(HttpBackend):
    channel = "app_push"
    provider = "jpush"
    public_base_url = "https://api.jpush.cn"
    sandbox_prefix = "/jpush"
    # A push repeated with the same cid answers the first push's result and pushes nothing
    # (JPush "cid: 用于防止 api 调用端重试造成服务端的重复推送"); we trust it for a day.
    reconcile = Reconcile.DEDUP
    dedup_window = timedelta(days=1)

    def prepare_steps(self, delivery: Delivery) -> Steps:
        """The cid is fetched (and kept on the delivery) before the attempt is recorded with it."""
        account = delivery.account
        secret = (account.credentials or {}).get("master_secret") if account else None
        if not secret or delivery.content.get("jpush_cid"):
            return None
        try:
            yield from self._new_cid(delivery, (account.app_id, secret))
        except ProviderHttpError as err:
            return err.result
        return None

    def prepare_chunk_steps(self, deliveries: list[Delivery]) -> Steps:
        """Cids for a chunk's deliveries that have none, many per call, kept on the deliveries in
        one UPDATE before their attempts are recorded; a result per delivery (None: go on).

        JPush's cid API: "count 可选参数。CID 数量，数值类型，不传则默认为 1。特别说明：a. 如果您是
        VIP 应用，则此值范围为 [1, 1000]；b. 如果您是非 VIP 应用，则此值范围为 [1, 10]，传递值>10
        默认按照10处理" (rest_api_v3_push_advanced): the account's `cid_batch` option (10 unless
        the app is VIP), and whatever number comes back is used, asking again for the rest."""
        results: list[DeliveryResult | None] = [None] * len(deliveries)
        wanting: dict[int, list[int]] = {}
        for i, delivery in enumerate(deliveries):
            account = delivery.account
            if account and (account.credentials or {}).get("master_secret") and not delivery.content.get("jpush_cid"):
                wanting.setdefault(account.pk, []).append(i)
        kept = []
        for indexes in wanting.values():
            account = deliveries[indexes[0]].account
            batch = max(1, min(int((account.options or {}).get("cid_batch") or CID_BATCH), CID_BATCH_VIP))
            auth = (account.app_id, account.credentials["master_secret"])
            while indexes:
                try:
                    cids = yield from self._cids(account, auth, min(batch, len(indexes)))
                except ProviderHttpError as err:
                    for i in indexes:
                        results[i] = err.result
                    break
                for i, cid in zip(indexes, cids, strict=False):
                    deliveries[i].content = {**deliveries[i].content, "jpush_cid": cid}
                    kept.append(deliveries[i])
                indexes = indexes[len(cids) :]
        column_update(Delivery, "content", {d.pk: d.content for d in kept})  # bulk_update: a CASE per row
        return results

    def provider_key(self, delivery: Delivery) -> str:
        return delivery.content.get("jpush_cid", "")

    def send_steps(self, delivery: Delivery) -> Steps:
        account = delivery.account
        secret = (account.credentials or {}).get("master_secret") if account else None
        if not secret:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No JPush app key and master secret.")
        auth = (account.app_id, secret)
        content = delivery.content
        try:
            cid = content.get("jpush_cid") or (yield from self._new_cid(delivery, auth))
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
                    **push_options(account.options, content.get("options")),
                },
            }
            answer = yield self.call("POST", f"{self.base_url(account)}/v3/push", json=body, auth=auth)
        except ProviderHttpError as err:
            return err.result
        error = answer.get("error")
        if not error:
            return DeliveryResult(AttemptOutcome.SENT, raw=answer, provider_message_id=str(answer.get("msg_id", "")))
        code, message = _error(answer)
        outcome = AttemptOutcome.TRANSIENT if code in TRANSIENT_CODES else AttemptOutcome.PERMANENT
        return DeliveryResult(outcome, str(code), message, answer)

    def problems(self, content: dict) -> list[str]:
        # JPush: the whole notification within 4,000 bytes for iOS; the alert is most of it.
        size = len((content.get("title", "") + content.get("body", "")).encode())
        found = [f"title and body are {size} bytes; a push carries at most 3,500"] if size > 3500 else []
        binding = {k: v for k, v in (content.get("options") or {}).items() if k in PUSH_OPTION_KEYS}
        if binding:
            found += push_option_problems(push_options({}, binding))
        return found

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
        if _first_cid(answer):
            return DeliveryResult(AttemptOutcome.SENT, message=_("app key and master secret accepted"), raw=answer)
        code, message = _error(answer)
        return DeliveryResult(AttemptOutcome.PERMANENT, str(code), message, answer)

    def _new_cid(self, delivery: Delivery, auth) -> Steps:
        (cid,) = yield from self._cids(delivery.account, auth, 1)
        delivery.content = {**delivery.content, "jpush_cid": cid}
        Delivery.objects.filter(pk=delivery.pk).update(content=delivery.content)
        return cid

    def _cids(self, account, auth, count: int) -> Steps:
        """Up to `count` fresh cids (at least one), or ProviderHttpError."""
        answer = yield self.call("GET", f"{self.base_url(account)}/v3/push/cid", params={"count": count}, auth=auth)
        cids = _cids(answer)
        if not cids:
            error = answer.get("error")
            if isinstance(error, dict) and error.get("code") is not None:
                # JPush's own refusal (1004 "Authen failed", …): its code and words.
                code, message = _error(answer)
                outcome = AttemptOutcome.TRANSIENT if code in TRANSIENT_CODES else AttemptOutcome.PERMANENT
                raise ProviderHttpError(DeliveryResult(outcome, str(code), message, answer))
            # Not an answer JPush documents (no cidlist, no error): a proxy or a fault on the way.
            # Nothing was pushed, so a later try is safe.
            raise ProviderHttpError(
                DeliveryResult(AttemptOutcome.TRANSIENT, "bad_response", "no cidlist in the cid answer", answer)
            )
        return cids[:count]


def _cids(answer: dict) -> list[str]:
    cids = answer.get("cidlist")
    if not isinstance(cids, list):
        return []
    return [c for c in cids if isinstance(c, str) and c]


def _first_cid(answer: dict) -> str:
    return next(iter(_cids(answer)), "")


def _error(answer: dict) -> tuple[int | str, str]:
    """JPush's error code and message; an error that is not the documented object is kept as text."""
    error = answer.get("error")
    if not isinstance(error, dict):
        return "bad_response", str(error)[:500]
    try:
        code: int | str = int(error.get("code", 0))
    except (TypeError, ValueError):
        code = str(error.get("code"))[:64]
    return code, str(error.get("message", ""))
