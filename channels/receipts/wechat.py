"""WeChat event pushes to the account's server URL (服务器配置): the official account's
TEMPLATESENDJOBFINISH (a template message's fate) and the mini program's
subscribe_msg_sent_event (a subscribe message's).

WeChat signs every call: `signature` = SHA-1 of the sorted token, timestamp and nonce (plain mode);
in safe mode (安全模式) the body is AES-encrypted with the EncodingAESKey and `msg_signature` also
covers the ciphertext (wechatpy's WeChatCrypto checks and decrypts). The URL handshake is a GET
answered with `echostr`. We refuse (401) a bad signature, a timestamp more than five minutes off,
and a nonce already used (a replay); a repeat of the same MsgID with a fresh signature is a
duplicate receipt, harmless. WeChat expects "success" (or an empty body) as the answer.

Account credentials: `token`, and for safe mode `encoding_aes_key` (the app id is the account's).
"""

import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from django.core.cache import cache
from django.http import HttpResponse
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from ..models import Channel, DeliveryStatus
from . import Receipt, Refused

CHANNELS = (Channel.WECHAT_OA_TEMPLATE, Channel.WECHAT_MINI_SUBSCRIBE)
MAX_SKEW_SECONDS = 300


def signature(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, *extra])).encode()).hexdigest()  # noqa: S324 (WeChat's scheme)


def authenticate(request, account) -> None:
    """Plain-mode signature, fresh timestamp, unused nonce (safe mode is checked in `parse`)."""
    token = (account.credentials or {}).get("token", "")
    q = request.GET
    timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
    if not token or not hmac.compare_digest(signature(token, timestamp, nonce), q.get("signature", "")):
        raise Refused("bad signature")
    try:
        skew = abs(time.time() - int(timestamp))
    except ValueError:
        raise Refused("bad timestamp") from None
    if skew > MAX_SKEW_SECONDS:
        raise Refused("timestamp too far from now: a replay")
    if not cache.add(f"nc:wechat-nonce:{account.pk}:{timestamp}:{nonce}", 1, timeout=2 * MAX_SKEW_SECONDS):
        raise Refused("nonce already used: a replay")


def handshake(request) -> HttpResponse:
    return HttpResponse(request.GET.get("echostr", ""), content_type="text/plain")


def _xml(raw: bytes) -> ET.Element:
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise ValueError("DOCTYPE and entities are not accepted")
    return ET.fromstring(raw)  # noqa: S314 (see above)


def _decrypt(request, account, raw: bytes) -> bytes:
    creds = account.credentials or {}
    crypto = WeChatCrypto(creds.get("token", ""), creds.get("encoding_aes_key", ""), account.app_id)
    q = request.GET
    try:
        return crypto.decrypt_message(
            raw, q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        ).encode()
    except InvalidSignatureException:
        raise Refused("bad msg_signature") from None


def _event(request, account) -> dict:
    raw = request.body
    if request.GET.get("encrypt_type") == "aes":
        raw = _decrypt(request, account, raw)
    if raw.lstrip().startswith(b"{"):
        return json.loads(raw)  # a mini program may be configured for JSON
    root = _xml(raw)
    event = {child.tag: (child.text or "") for child in root if len(child) == 0}
    sent = root.find("SubscribeMsgSentEvent")
    if sent is not None:
        event["SubscribeMsgSentEvent"] = {"List": [{c.tag: c.text or "" for c in item} for item in sent.iter("List")]}
    return event


def _at(event: dict) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(event.get("CreateTime", "")), tz=UTC)
    except (TypeError, ValueError):
        return None


def parse(request, account) -> list[Receipt]:
    event = _event(request, account)
    name = event.get("Event", "")
    raw = {k: v for k, v in event.items() if k not in ("FromUserName", "ToUserName")}
    if name == "TEMPLATESENDJOBFINISH":
        # Status: "success", "failed:user block" (the user refused), "failed: system failed".
        status = event.get("Status", "")
        return [
            Receipt(
                status=DeliveryStatus.DELIVERED if status == "success" else DeliveryStatus.UNDELIVERED,
                provider_message_id=str(event.get("MsgID", "")),
                code=status[:64],
                text=status,
                reported_at=_at(event),
                raw=raw,
            )
        ]
    if name == "subscribe_msg_sent_event":
        items = (event.get("SubscribeMsgSentEvent") or {}).get("List") or []
        if isinstance(items, dict):
            items = [items]
        return [
            Receipt(
                # ErrorCode 0 success; 10004 the user refused; 20001 a system error (WeChat's table).
                status=DeliveryStatus.DELIVERED if str(item.get("ErrorCode")) == "0" else DeliveryStatus.UNDELIVERED,
                provider_message_id=str(item.get("MsgID", "")),
                code=str(item.get("ErrorCode", "")),
                text=str(item.get("ErrorStatus", "")),
                reported_at=_at(event),
                raw=raw,
            )
            for item in items
        ]
    return []  # other events (a follow, a menu click) are not ours to keep


def answer() -> HttpResponse:
    return HttpResponse("success", content_type="text/plain")
