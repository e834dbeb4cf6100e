"""WeCom (企业微信) group robot: a webhook per group, markdown or text. A robot takes 20 messages
a minute ("api freq out of limit" past it): its account's rate limit, a sliding window
(channels/ratelimit.py), keeps deliveries waiting in the outbox, never dropped.

Sizes, as WeCom documents them: a robot's markdown "最长不超过4096个字节", its text 2048; an app
message's markdown "最长不超过2048个字节" (UTF-8 bytes, not characters). A template whose sample
exceeds them cannot be saved (`problems`); real data that does is cut at send, on a character
boundary and never inside a link, with an ellipsis.
"""

import hashlib
import re
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from ..models import AttemptOutcome, Channel, Delivery
from ..rows import column_update
from ..tokens import TokenUnavailable, access_token
from .base import DeliveryResult, Reconcile, scrubbed
from .http import HttpBackend, ProviderHttpError, Steps, drive
from .tokened import TokenBackend

TRANSIENT_CODES = {
    -1,  # "system busy"
    45009,  # "api freq out of limit"
}
ROBOT_PER_MINUTE = 20
ROBOT_MARKDOWN_BYTES = 4096
ROBOT_TEXT_BYTES = 2048
APP_MARKDOWN_BYTES = 2048
ELLIPSIS = "…"
# What must not be cut in two: a markdown link, a bare URL, a <font …> tag.
_UNCUTTABLE = re.compile(r"\[[^\]\n]*\]\([^)\s]*\)|https?://[^\s)\]]+|<font[^>]*>|</font>")


def cut_utf8(text: str, limit: int) -> str:
    """`text` within `limit` UTF-8 bytes: whole characters only, never inside a link, a URL or a
    tag (the cut moves before it), and an ellipsis where something was left out."""
    if len(text.encode()) <= limit:
        return text
    budget = limit - len(ELLIPSIS.encode())
    kept = text.encode()[: max(budget, 0)].decode("utf-8", errors="ignore")  # drops a split character
    end = len(kept)
    for match in _UNCUTTABLE.finditer(text):
        if match.start() < end < match.end():
            end = match.start()
            break
    return text[:end].rstrip() + ELLIPSIS


def markdown(content: dict, limit: int | None = None) -> str:
    """Title, body and the "details" link; within `limit` bytes, the body gives way first so
    the title and the link arrive whole."""
    head = f"**{content.get('title', '')}**"
    body = content.get("body", "")
    url = (content.get("link") or {}).get("h5")
    tail = [f"[查看详情]({url})"] if url else []
    text = "\n".join([head, body, *tail])
    if limit is None or len(text.encode()) <= limit:
        return text
    room = limit - len("\n".join([head, "", *tail]).encode())
    if room >= 16:
        return "\n".join([head, cut_utf8(body, room), *tail])
    return cut_utf8(text, limit)


def duplicate_check_seconds() -> int:
    """WeCom's duplicate check serves as retry protection only: it lasts as long as the engine
    may send a delivery again (its transient retries, the sum of their backoff ceilings; and a
    resend of an unknown outcome, which channels/reconcile.py makes RECONCILE_AFTER_SECONDS after
    the attempt, past its lease, while the window has a minute left), so a retry is never shown
    twice and a later message with the same words is not swallowed for half an hour (WeCom's
    default, 1800 s; at most 4 hours). About 3 minutes with the default settings."""
    from .. import sending  # the engine's retry schedule; sending imports this module

    attempts = sending.MAX_ATTEMPTS.get(Channel.WECOM_APP, sending.DEFAULT_MAX_ATTEMPTS)
    backoff = sum(
        min(sending.BACKOFF_CAP_SECONDS, sending.BACKOFF_BASE_SECONDS * 2 ** (n - 1)) for n in range(1, attempts)
    )
    resend = settings.RECONCILE_AFTER_SECONDS + sending.lease().total_seconds() + 2 * 60
    return int(min(max(backoff, resend, 60), 4 * 3600))


class WeComRobotBackend(HttpBackend):
    channel = "wecom_robot"
    provider = "wecom"
    public_base_url = "https://qyapi.weixin.qq.com"
    sandbox_prefix = "/wecom"
    reconcile = Reconcile.NONE  # a webhook post has no key and no query

    def send_steps(self, delivery: Delivery) -> Steps:
        account = delivery.account
        content = delivery.content
        options = content.get("options") or {}
        if options.get("msgtype") == "text":
            body = {
                "msgtype": "text",
                "text": {
                    "content": cut_utf8(f"{content.get('title', '')}\n{content.get('body', '')}", ROBOT_TEXT_BYTES),
                    "mentioned_mobile_list": options.get("mentioned_mobile_list", []),
                },
            }
        else:
            body = {"msgtype": "markdown", "markdown": {"content": markdown(content, ROBOT_MARKDOWN_BYTES)}}
        return (yield from self.post_robot(account, body))

    def problems(self, content: dict) -> list[str]:
        if (content.get("options") or {}).get("msgtype") == "text":
            size = len(f"{content.get('title', '')}\n{content.get('body', '')}".encode())
            limit, kind = ROBOT_TEXT_BYTES, "text"
        else:
            size, limit, kind = len(markdown(content).encode()), ROBOT_MARKDOWN_BYTES, "markdown"
        return [f"{kind} is {size} bytes; a robot takes at most {limit}"] if size > limit else []

    def check(self, account) -> DeliveryResult:
        """A group robot has no read-only call: the check posts one short text to its group, and
        says so (WeCom's "ok" carries no words of its own)."""
        result = drive(
            self.post_robot(account, {"msgtype": "text", "text": {"content": "【通知中心】连接测试，请忽略。"}})
        )
        if result.outcome == AttemptOutcome.SENT:
            return replace(result, message=_("test message posted to the group"))
        return result

    def post_robot(self, account, body: dict) -> Steps:
        key = (account.credentials or {}).get("robot_key") if account else None
        if not key:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No WeCom robot key is configured.")
        try:
            answer = yield self.call(
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
    """An app message (message/send) to a staff member's WeCom user id, with WeCom's duplicate
    check as retry protection only (see `duplicate_check_seconds` and `duplicate_check`)."""

    channel = "wecom_app"
    provider = "wecom"
    public_base_url = "https://qyapi.weixin.qq.com"
    sandbox_prefix = "/wecom"
    token_path = "/cgi-bin/gettoken"  # noqa: S105 (a URL path, not a secret)
    token_codes = frozenset({40014, 42001})  # "invalid access_token", "access_token expired"
    transient_codes = frozenset(TRANSIENT_CODES)
    # The duplicate check (same user, same content, within duplicate_check_interval) is the key.
    reconcile = Reconcile.DEDUP

    @property
    def dedup_window(self) -> timedelta:
        return timedelta(seconds=duplicate_check_seconds())

    def reconcile_for(self, delivery: Delivery) -> str:
        """A delivery sent without the duplicate check (another with the same words went first)
        has no key to resend with: its unknown outcome stays unknown."""
        if delivery.content.get("wecom_duplicate_check") == 0:
            return Reconcile.NONE
        return self.reconcile

    def token_params(self, account) -> dict:
        return {"corpid": account.app_id, "corpsecret": (account.credentials or {}).get("corp_secret", "")}

    def check(self, account) -> DeliveryResult:
        """The token proves CorpID and Secret; agent/get then proves the AgentId is the app that
        Secret belongs to ("企业仅可获取当前凭证对应的应用"), which every message names: a wrong
        one would fail each of them 301002 (or 40056), found only at the first send."""
        result = super().check(account)
        if result.outcome != AttemptOutcome.SENT:
            return result
        agentid = (account.options or {}).get("agentid")
        if not agentid:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No WeCom app (agentid) is configured.")
        try:
            token = access_token(account.pk, lambda: self.fetch_token(account))
            answer = self.request(
                "GET",
                f"{self.base_url(account)}/cgi-bin/agent/get",
                params={"access_token": token, "agentid": agentid},
            )
        except ProviderHttpError as err:
            return err.result
        except TokenUnavailable as err:
            return DeliveryResult(AttemptOutcome.TRANSIENT, "token_unavailable", str(err))
        errcode = int(answer.get("errcode", 0))
        if errcode:
            return DeliveryResult(self.outcome_for(errcode), str(errcode), answer.get("errmsg", ""), answer)
        if answer.get("close"):
            return DeliveryResult(
                AttemptOutcome.PERMANENT, "app_closed", "The WeCom app is disabled (停用) in the admin.", answer
            )
        app = _("app “%(name)s” (AgentId %(agentid)s)") % {"name": answer.get("name", ""), "agentid": agentid}
        return replace(result, message=f"{result.message}; {app}")

    def send_steps(self, delivery: Delivery) -> Steps:
        account = delivery.account
        agentid = (account.options or {}).get("agentid") if account else None
        if not agentid:
            return DeliveryResult(AttemptOutcome.PERMANENT, "no_account", "No WeCom app (agentid) is configured.")
        text = markdown(delivery.content, APP_MARKDOWN_BYTES)
        interval = self.duplicate_check(delivery, text)
        body = {
            "touser": delivery.address,
            "msgtype": "markdown",
            "agentid": int(agentid),
            "markdown": {"content": text},
            "enable_duplicate_check": 1 if interval else 0,
        }
        if interval:
            body["duplicate_check_interval"] = interval
        result = yield from self.post_with_token(account, "/cgi-bin/message/send", body)
        if result.outcome == AttemptOutcome.SENT and delivery.address in (result.raw.get("invaliduser") or "").split(
            "|"
        ):
            # WeCom answers "ok" but names the user it could not reach.
            return scrubbed(
                DeliveryResult(
                    AttemptOutcome.PERMANENT, "invalid_user", f"invaliduser: {delivery.address}", result.raw
                ),
                delivery,
            )
        return scrubbed(result, delivery)

    def problems(self, content: dict) -> list[str]:
        size = len(markdown(content).encode())
        return (
            [f"markdown is {size} bytes; a WeCom app message takes at most {APP_MARKDOWN_BYTES}"]
            if (size > APP_MARKDOWN_BYTES)
            else []
        )

    def prepare_chunk_steps(self, deliveries: list[Delivery]) -> Steps:
        """A chunk's duplicate checks decided together (`duplicate_checks`) before its attempts
        are opened; nothing is asked of WeCom, so every delivery goes on (None)."""
        duplicate_checks(deliveries)
        yield from ()
        return [None] * len(deliveries)

    def duplicate_check(self, delivery: Delivery, text: str) -> int:
        """The duplicate-check interval for this delivery, 0 for none (`duplicate_checks`; the
        chunk's, when the chunk decided it)."""
        if delivery.content.get("wecom_duplicate_check") == 0:
            return 0
        if getattr(delivery, DECIDED, None) is None:
            duplicate_checks([delivery], [text])
        return getattr(delivery, DECIDED)


# Where `duplicate_checks` leaves its decision on a delivery, in memory only (0: without the check).
DECIDED = "_wecom_duplicate_interval"


def duplicate_checks(deliveries: list[Delivery], texts: list[str] | None = None) -> None:
    """Whether each delivery goes with WeCom's duplicate check, and for how long.

    WeCom swallows "同样内容（请求json）的消息" within the interval and answers the repeat as a
    success (no error code is documented for it). So the first delivery of some words to a
    person within the interval claims them (a key in the shared cache: no scan of the delivery
    table) and keeps the check for its retries; another delivery with the same words in that
    time goes without the check, and keeps going without it on its retries (kept on the
    delivery): two deliveries are two messages, never one swallowed and recorded sent.

    A chunk's keys are claimed in one round trip (and their holders read in one more when some
    were taken), its deliveries turned to "without" in one UPDATE: per delivery, these were a
    fifth of a WeCom app send's CPU."""
    texts = texts or [markdown(d.content, APP_MARKDOWN_BYTES) for d in deliveries]
    interval = duplicate_check_seconds()
    claimants: dict[str, list[Delivery]] = {}  # a key's deliveries, in the chunk's order
    for delivery, text in zip(deliveries, texts, strict=True):
        if delivery.content.get("wecom_duplicate_check") == 0:
            setattr(delivery, DECIDED, 0)
            continue
        digest = hashlib.sha256(f"{delivery.account_id}\n{delivery.address}\n{text}".encode()).hexdigest()
        claimants.setdefault(f"nc:wecom-dup:{digest}", []).append(delivery)
    if not claimants:
        return
    first = {key: group[0].pk for key, group in claimants.items()}
    add_many = getattr(cache, "add_many", None)
    if add_many is not None:
        added = add_many(first, timeout=interval)
    else:  # a cache without it (the embedded local memory): one `add` each
        added = {key for key, pk in first.items() if cache.add(key, pk, timeout=interval)}
    taken = [key for key in claimants if key not in added]
    holders = cache.get_many(taken) if taken else {}
    without = {}
    for key, group in claimants.items():
        holder = first[key] if key in added else holders.get(key)
        for delivery in group:
            if delivery.pk == holder:
                setattr(delivery, DECIDED, interval)
            else:
                delivery.content = {**delivery.content, "wecom_duplicate_check": 0}
                setattr(delivery, DECIDED, 0)
                without[delivery.pk] = delivery.content
    column_update(Delivery, "content", without)
