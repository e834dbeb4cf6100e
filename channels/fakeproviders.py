"""A local server speaking the providers' HTTP APIs, for the sandbox and the tests.

Served: WeChat (under /wechat: cgi-bin/token, cgi-bin/stable_token, message/subscribe/send,
message/template/send),
WeCom (under /wecom: cgi-bin/gettoken, agent/get, message/send, and the group robot's webhook/send), JPush
(under /jpush: v3/push/cid, v3/push), Aliyun SMS (under /aliyun: SendSms, QuerySmsSign,
QuerySendDetails, signature checked) and Tencent Cloud SMS (under /tencent: SendSms,
SendStatusStatistics, PullSmsSendStatusByPhoneNumber 2021-01-11, TC3 signature checked), with
their documented request and response shapes; malformed requests are refused with the codes the
real ones use.

Control: GET /_calls (what was received), DELETE /_calls, GET /_delivered (what reached a person,
after each provider's own de-duplication), POST /_script (answer the next requests to a path with
given responses and latency: with "json" (or "text", an answer that is not JSON) that answer and
nothing done; with "drop" the connection
closed unanswered; otherwise acted on first and answered after the latency), POST /_receipts
(push the status reports of the SMS accepted so far to the center's callback URLs, batched, some
duplicated, some for unknown ids, and WeChat's signed events for the template and subscribe
messages accepted: push_receipts), POST /_latency
({"ms": 20} added to every answer; "max_ms" for a uniform spread; "late_share" and "late_ms" for
answers after a client's timeout), POST /_expire_tokens, POST /_advance ({"seconds": 600}: the
fake's clock runs ahead, for token lives, rate windows and de-duplication windows), POST /_signs
({"互联网医院": 2}: an Aliyun signature's review state), POST /_wecom_apps ({"corpid", "corpsecret",
"agentid"}: the WeCom app a secret belongs to; unregistered secrets belong to agentid 1000002, the
sandbox's), POST /_reset.
"""

import asyncio
import hashlib
import http.client
import io
import json
import random
import re
import secrets
import threading
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

import uvloop


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.latency_ms = 0  # added to every provider answer (POST /_latency, or --latency-ms)
        self.latency_max_ms = 0  # when above latency_ms: each answer takes a uniform draw between
        self.late_share = 0.0  # this share of answers comes after late_ms instead (past a timeout)
        self.late_ms = 0
        self.calls: list[dict] = []
        self.scripts: dict[str, list[dict]] = {}
        self.tokens: dict[str, str] = {}  # token → appid
        self.pushes: dict[str, tuple[str, float]] = {}  # JPush cid → (msg_id, when): a repeat is the same push
        # SMS each provider accepted, for its query APIs (Aliyun QuerySendDetails, Tencent
        # PullSmsSendStatusByPhoneNumber).
        self.sms: list[dict] = []
        # Aliyun signatures' review states by name (POST /_signs): 1 approved unless set.
        self.signs: dict[str, int] = {}
        # What reached a person: one entry per message a real provider would have shown, after its
        # own de-duplication (GET /_delivered). Tests and bench/faults.py count duplicates here.
        self.delivered: list[dict] = []
        self.first_seen: dict[tuple[str, str], float] = {}
        self.offset = 0.0  # POST /_advance {"seconds": n}: the fake's clock runs ahead, for windows
        self.token_expiry: dict[str, float] = {}  # token → when the provider stops taking it
        self.plain_tokens: dict[str, str] = {}  # appid → newest /cgi-bin/token token
        self.wecom_tokens: dict[tuple[str, str], str] = {}  # (corpid, corpsecret) → its current token
        # A WeCom secret is one app's (its Secret on the app's page): (corpid, corpsecret) → agentid
        # (POST /_wecom_apps); a token acts for that app only. Unregistered: WECOM_DEFAULT_AGENTID.
        self.wecom_apps: dict[tuple[str, str], int] = {}
        self.wecom_token_app: dict[str, tuple[str, str]] = {}  # token → (corpid, corpsecret)
        self.stable: dict[str, dict] = {}  # appid → {"token", "expires", "forced": [times], "calls": [times]}
        self.robot_sent: dict[str, list[float]] = {}  # robot key → send times in the last minute
        self.wecom_sent: dict[str, tuple[float, str]] = {}  # app message request JSON → (when, msgid)
        self.oa_sent: dict[tuple[str, str], tuple[float, int]] = {}  # (openid, client_msg_id) → (when, msgid)
        # WeChat template and subscribe messages accepted, for their event pushes (push_receipts).
        self.wechat_sent: list[dict] = []

    def now(self) -> float:
        return time.time() + self.offset

    def token_valid(self, token) -> bool:
        """Caller holds the lock."""
        return token in self.tokens and self.token_expiry.get(token, float("inf")) > self.now()


def _wechat_data_errors(data) -> str | None:
    if not isinstance(data, dict) or not data:
        return "data"
    for key, value in data.items():
        if not isinstance(value, dict) or not isinstance(value.get("value"), str):
            return f"data.{key}.value"
    return None


def wechat(state: State, method: str, path: str, query: dict, body, headers=None) -> tuple[int, dict]:
    if path == "/cgi-bin/token":
        if query.get("grant_type") != "client_credential" or not query.get("appid"):
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        if not query.get("secret"):
            return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
        token = secrets.token_urlsafe(24)
        with state.lock:
            # getAccessToken: "重复获取将导致上次获取的 access_token 失效" (a new token retires the
            # previous one), with "5 分钟内新老 access_token 都可用" for the hand-over.
            previous = state.plain_tokens.get(query["appid"])
            if previous and state.token_valid(previous):
                state.token_expiry[previous] = min(state.token_expiry.get(previous, float("inf")), state.now() + 300)
            state.plain_tokens[query["appid"]] = token
            state.tokens[token] = query["appid"]
            state.token_expiry[token] = state.now() + 7200
        return 200, {"access_token": token, "expires_in": 7200}
    if path == "/cgi-bin/stable_token":
        return wechat_stable_token(state, method, body)
    if path in ("/cgi-bin/message/subscribe/send", "/cgi-bin/message/template/send"):
        if method != "POST":
            return 200, {"errcode": 43002, "errmsg": "require POST method"}
        with state.lock:
            known = state.token_valid(query.get("access_token"))
        if not known:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        if not isinstance(body, dict) or not body.get("touser"):
            return 200, {"errcode": 40003, "errmsg": "invalid openid"}
        if not body.get("template_id"):
            return 200, {"errcode": 40037, "errmsg": "invalid template_id"}
        bad = _wechat_data_errors(body.get("data"))
        if bad:
            return 200, {"errcode": 47003, "errmsg": f"argument invalid! {bad}"}
        if path.endswith("subscribe/send") and body.get("miniprogram_state", "formal") not in (
            "developer",
            "trial",
            "formal",
        ):
            return 200, {"errcode": 47003, "errmsg": "argument invalid! miniprogram_state"}
        msgid = int(time.time() * 1000)
        client_msg_id = body.get("client_msg_id") if path.endswith("template/send") else None
        if client_msg_id:
            # sendTemplateMessage: "防重入id。对于同一个openid + client_msg_id, 只发送一条消息, 10分钟有效,
            # 超过10分钟不保证效果". The docs name no error code for a repeat (45065 "clientmsgid exist"
            # belongs to the mass-send API): a repeat is answered like the send it repeats, ok with
            # its msgid, and nothing more is sent.
            with state.lock:
                key = (body["touser"], str(client_msg_id))
                seen = state.oa_sent.get(key)
                if seen and state.now() - seen[0] < WECHAT_CLIENT_MSG_ID_WINDOW:
                    return 200, {"errcode": 0, "errmsg": "ok", "msgid": seen[1]}
                state.oa_sent[key] = (state.now(), msgid)
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": msgid}
    return 404, {"errcode": 404, "errmsg": "not found"}


STABLE_EARLY_SECONDS = 300  # "普通模式下平台会提前 5 分钟更新 access_token"
STABLE_FORCE_PER_DAY = 20  # "强制刷新模式每天限用 20 次且需间隔 30 秒"
STABLE_FORCE_GAP_SECONDS = 30
STABLE_PER_MINUTE = 10_000  # "该接口调用频率限制为 1 万次每分钟"


def wechat_stable_token(state: State, method: str, body) -> tuple[int, dict]:
    """getStableAccessToken (POST /cgi-bin/stable_token, a JSON body), as documented: the same
    token while it is valid (a new one in its last 5 minutes, the old still taken until it ends);
    force_refresh=true retires it at once, at most 20 times a day and not twice within 30 s ("否则
    不会刷新": the current token comes back unchanged); isolated from /cgi-bin/token."""
    if method != "POST":
        return 200, {"errcode": 43002, "errmsg": "require POST method"}
    if not isinstance(body, dict) or body.get("grant_type") != "client_credential":
        return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
    if not body.get("appid"):
        return 200, {"errcode": 40013, "errmsg": "invalid appid"}
    if not body.get("secret"):
        return 200, {"errcode": 40125, "errmsg": "invalid appsecret"}
    force = body.get("force_refresh", False)
    if not isinstance(force, bool):
        return 200, {"errcode": 47001, "errmsg": "data format error"}
    with state.lock:
        now = state.now()
        entry = state.stable.setdefault(body["appid"], {"token": None, "expires": 0.0, "forced": [], "calls": []})
        entry["calls"] = [t for t in entry["calls"] if now - t < 60] + [now]
        if len(entry["calls"]) > STABLE_PER_MINUTE:
            return 200, {"errcode": 45011, "errmsg": "api minute-quota reach limit"}
        current = entry["token"] if entry["token"] and state.token_valid(entry["token"]) else None
        renew = current is None or entry["expires"] - now <= STABLE_EARLY_SECONDS
        if force:
            entry["forced"] = [t for t in entry["forced"] if now - t < 86400]
            if len(entry["forced"]) >= STABLE_FORCE_PER_DAY:
                return 200, {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
            if not (entry["forced"] and now - entry["forced"][-1] < STABLE_FORCE_GAP_SECONDS):
                entry["forced"].append(now)
                if current:
                    state.token_expiry[current] = now  # "会导致上次获取的 access_token 失效"
                renew = True
        if renew:
            token = secrets.token_urlsafe(24)
            state.tokens[token] = body["appid"]
            state.token_expiry[token] = now + 7200
            entry["token"], entry["expires"] = token, now + 7200
        return 200, {"access_token": entry["token"], "expires_in": int(entry["expires"] - now)}


WECOM_APP_MARKDOWN_BYTES = 2048
WECOM_DEFAULT_AGENTID = 1000002  # the app of a secret nobody registered (the sandbox account's)
# "企业仅可获取当前凭证对应的应用" (agent/get): a token made with one app's secret acts for that
# app only; another agentid is answered 301002 "not allow operate another agent with this
# accesstoken", on agent/get as on message/send; one that is no number, 40056 "invalid agentid".
WECOM_OTHER_AGENT = {"errcode": 301002, "errmsg": "not allow operate another agent with this accesstoken"}
WECOM_ROBOT_MARKDOWN_BYTES = 4096
WECOM_ROBOT_PER_MINUTE = 20


def _wecom_token_agent(state: State, token) -> int | None:
    """The agentid a valid WeCom token acts for; None for an unknown or expired token, or one
    WeCom did not issue (a WeChat token). Caller holds the lock."""
    key = state.wecom_token_app.get(token) if state.token_valid(token) else None
    return None if key is None else state.wecom_apps.get(key, WECOM_DEFAULT_AGENTID)


def _wecom_agentid(value) -> int | None:
    """An agentid as WeCom reads one (a number, in JSON or the query string); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        agentid = int(value)
    except (TypeError, ValueError):
        return None
    return agentid if agentid > 0 else None


def wecom(state: State, method: str, path: str, query: dict, body, headers=None) -> tuple[int, dict]:
    if path == "/cgi-bin/gettoken":
        if not query.get("corpid"):
            return 200, {"errcode": 40013, "errmsg": "invalid corpid"}
        if not query.get("corpsecret"):
            return 200, {"errcode": 40001, "errmsg": "invalid secret"}
        with state.lock:
            # WeCom gettoken: "有效期内重复获取返回相同结果，过期后获取会返回新的access_token".
            key = (query["corpid"], query["corpsecret"])
            token = state.wecom_tokens.get(key)
            if not (token and state.token_valid(token)):
                token = secrets.token_urlsafe(24)
                state.tokens[token] = query["corpid"]
                state.token_expiry[token] = state.now() + 7200
                state.wecom_tokens[key] = token
                state.wecom_token_app[token] = key
            expires_in = int(state.token_expiry[token] - state.now())
        return 200, {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}
    if path == "/cgi-bin/agent/get":
        with state.lock:
            app = _wecom_token_agent(state, query.get("access_token"))
        if app is None:
            return 200, {"errcode": 40014, "errmsg": "invalid access_token"}
        agentid = _wecom_agentid(query.get("agentid"))
        if agentid is None:
            return 200, {"errcode": 40056, "errmsg": "invalid agentid"}
        if agentid != app:
            return 200, WECOM_OTHER_AGENT
        return 200, {"errcode": 0, "errmsg": "ok", "agentid": agentid, "name": "互联网医院通知", "close": 0}
    if path == "/cgi-bin/message/send":
        with state.lock:
            app = _wecom_token_agent(state, query.get("access_token"))
        if app is None:
            return 200, {"errcode": 40014, "errmsg": "invalid access_token"}
        agentid = _wecom_agentid(body.get("agentid") if isinstance(body, dict) else None)
        if agentid is None:
            return 200, {"errcode": 40056, "errmsg": "invalid agentid"}
        if agentid != app:
            return 200, WECOM_OTHER_AGENT
        if not (body.get("touser") or body.get("toparty") or body.get("totag")):
            return 200, {"errcode": 81013, "errmsg": "user & party & tag all invalid"}
        if body.get("msgtype") == "markdown":
            content = (body.get("markdown") or {}).get("content", "")
            if not content:
                return 200, {"errcode": 44004, "errmsg": "empty content"}
            if len(content.encode()) > WECOM_APP_MARKDOWN_BYTES:  # "最长不超过2048个字节"
                return 200, {
                    "errcode": 40058,
                    "errmsg": "markdown.content exceed max length 2048. invalid Request Parameter",
                }
        interval = body.get("duplicate_check_interval", 1800)
        if not isinstance(interval, int) or not 0 < interval <= 4 * 3600:  # "默认1800s，最大不超过4小时"
            return 200, {"errcode": 40058, "errmsg": "invalid duplicate_check_interval"}
        msgid = secrets.token_hex(8)
        with state.lock:
            if body.get("enable_duplicate_check") == 1:
                # "在一定时间间隔内，同样内容（请求json）的消息，不会重复收到". The docs give no error
                # code for the repeat: WeCom answers it as an ordinary success (errcode 0, "ok"), so
                # a sender cannot tell a swallowed message from a sent one (issue 11 saw 7 distinct
                # deliveries recorded `sent`). Whether the msgid is the first one's is not
                # documented; the fake gives the first one's.
                key = json.dumps(body, sort_keys=True, ensure_ascii=False)
                seen = state.wecom_sent.get(key)
                if seen and state.now() - seen[0] < interval:
                    return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": seen[1]}
                state.wecom_sent[key] = (state.now(), msgid)
        return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msgid}
    if path == "/cgi-bin/webhook/send":
        if not query.get("key"):
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        if not isinstance(body, dict) or body.get("msgtype") not in ("text", "markdown", "image", "news", "file"):
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        content = (body.get(body["msgtype"]) or {}).get("content", "")
        if body["msgtype"] in ("text", "markdown") and not content:
            return 200, {"errcode": 44004, "errmsg": "empty content"}
        # Group robot: text "最长不超过2048个字节", markdown "最长不超过4096个字节".
        limit = WECOM_ROBOT_MARKDOWN_BYTES if body["msgtype"] == "markdown" else 2048
        if len(content.encode()) > limit:
            # As WeCom words it (seen in the wild): "markdown.content exceed max length 4096. …".
            return 200, {
                "errcode": 40058,
                "errmsg": f"{body['msgtype']}.content exceed max length {limit}. invalid Request Parameter",
            }
        with state.lock:
            # "每个机器人发送的消息不能超过20条/分钟": any 60 s holds at most 20 accepted messages.
            now = state.now()
            recent = [t for t in state.robot_sent.get(query["key"], []) if now - t < 60]
            if len(recent) >= WECOM_ROBOT_PER_MINUTE:
                state.robot_sent[query["key"]] = recent
                return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
            state.robot_sent[query["key"]] = [*recent, now]
        return 200, {"errcode": 0, "errmsg": "ok"}
    return 404, {"errcode": 404, "errmsg": "not found"}


# JPush push API v3 (docs.jiguang.cn/jpush/server/push/rest_api_v3_push), options: "classification:
# 0 代表运营消息，1 代表系统消息"; third_party_channel per vendor. The values the fake accepts are the
# documented ones (Huawei/Honor importance, OPPO/vivo category, vivo classification).
JPUSH_VENDOR_RULES = {
    "xiaomi": {"channel_id": str},
    "huawei": {"importance": ("LOW", "NORMAL", "HIGH"), "category": str},
    "honor": {"importance": ("LOW", "NORMAL")},
    "oppo": {"channel_id": str, "category": str, "notify_level": (1, 2, 16)},
    "vivo": {"classification": (0, 1), "category": str},
    "meizu": {},
    "fcm": {},
}


def _jpush_options_error(options) -> str | None:
    if options is None:
        return None
    if not isinstance(options, dict):
        return "options"
    if "classification" in options and options["classification"] not in (0, 1):
        return "options.classification"
    channels = options.get("third_party_channel")
    if channels is None:
        return None
    if not isinstance(channels, dict):
        return "options.third_party_channel"
    for vendor, fields in channels.items():
        rules = JPUSH_VENDOR_RULES.get(vendor)
        if rules is None or not isinstance(fields, dict):
            return f"options.third_party_channel.{vendor}"
        for name, rule in rules.items():
            if name not in fields:
                continue
            value = fields[name]
            ok = isinstance(value, str) and value != "" if rule is str else value in rule
            if not ok:
                return f"options.third_party_channel.{vendor}.{name}"
    return None


def jpush(state: State, method: str, path: str, query: dict, body, headers=None) -> tuple[int, dict]:
    if not (headers or {}).get("Authorization", "").startswith("Basic "):
        return 401, {"error": {"code": 1004, "message": "Authen failed"}}
    if path == "/v3/push/cid":
        # "count … 默认为 1 … 如果您是非 VIP 应用，则此值范围为 [1, 10]，传递值>10默认按照10处理"
        # (rest_api_v3_push_advanced): the fake's apps are not VIP.
        count = min(max(int(query.get("count", 1)), 1), 10)
        return 200, {"cidlist": [f"{secrets.token_hex(12)}-{secrets.token_hex(4)}" for _ in range(count)]}
    if path == "/v3/push" and method == "POST":
        ids = ((body or {}).get("audience") or {}).get("registration_id") if isinstance(body, dict) else None
        if not ids or not isinstance(body.get("notification"), dict) or body.get("platform") is None:
            return 400, {"error": {"code": 1003, "message": "Parameter value is invalid"}}
        bad = _jpush_options_error(body.get("options"))
        if bad:
            return 400, {"error": {"code": 1003, "message": f"Parameter value is invalid: {bad}"}}
        with state.lock:
            # "cid: 用于防止 api 调用端重试造成服务端的重复推送而定义的一个推送参数。用户使用一个 cid 推送后，
            # 再次使用相同的 cid 进行推送，则会直接返回第一次成功推送的结果，不会再次进行推送" (valid a day).
            now = state.now()
            cid = body.get("cid") or secrets.token_hex(6)
            seen = state.pushes.get(cid)
            if seen and now - seen[1] < JPUSH_CID_WINDOW:
                return 200, {"sendno": "0", "msg_id": seen[0]}
            msg_id = f"{int(time.time() * 1000)}{secrets.randbelow(1000):03d}"
            state.pushes[cid] = (msg_id, now)
        return 200, {"sendno": "0", "msg_id": msg_id}
    return 404, {"error": {"code": 404, "message": "not found"}}


# The fake Aliyun knows one key pair, the sandbox accounts' (throwaway values, not secrets).
ALIYUN_KEYS = {"sandbox-access-key": "sandbox-access-secret"}


def aliyun(state: State, method: str, path: str, query: dict, body, headers=None) -> tuple[int, dict]:
    from channels.providers.sms import aliyun_signature

    if method == "POST" and isinstance(body, dict):
        query = {**query, **body}  # RPC parameters may come as a form body

    request_id = secrets.token_hex(8).upper()
    actions = ("SendSms", "QuerySmsSign", "QuerySendDetails")
    if query.get("Action") not in actions or query.get("Version") != "2017-05-25":
        return 404, {"Code": "InvalidAction.NotFound", "Message": "Specified api is not found", "RequestId": request_id}
    secret = ALIYUN_KEYS.get(query.get("AccessKeyId", ""))
    if secret is None:
        return 404, {
            "Code": "InvalidAccessKeyId.NotFound",
            "Message": "Specified access key is not found.",
            "RequestId": request_id,
        }
    signed = {k: v for k, v in query.items() if k != "Signature"}
    if query.get("Signature") != aliyun_signature(signed, secret, method):
        return 400, {
            "Code": "SignatureDoesNotMatch",
            "Message": "Specified signature is not matched with our calculation.",
            "RequestId": request_id,
        }
    if query["Action"] == "QuerySmsSign":
        if not query.get("SignName"):
            return 200, {
                "Code": "isv.SMS_SIGNATURE_ILLEGAL",
                "Message": "该账号下找不到对应签名",
                "RequestId": request_id,
            }
        # SignStatus: "0:审核中。1:审核通过。2:审核失败,请在返回参数 Reason 中查看审核失败原因。
        # 10:取消审核。" Reason: "如果审核状态为审核通过审核中,参数 Reason 显示为“无审核备注”"
        # (QuerySmsSign, help.aliyun.com/document_detail/419283.html).
        status = state.signs.get(query["SignName"], 1)
        return 200, {
            "Code": "OK",
            "Message": "OK",
            "SignName": query["SignName"],
            "SignStatus": status,
            "Reason": "文件不能证明信息真实性,请重新上传" if status == 2 else "无审核备注",
            "CreateDate": "2026-01-01 00:00:00",
            "RequestId": request_id,
        }
    if query["Action"] == "QuerySendDetails":
        return 200, _aliyun_query(state, query, request_id)
    if not re.fullmatch(r"1\d{10}", query.get("PhoneNumbers", "")):
        return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号", "RequestId": request_id}
    if not query.get("SignName"):
        return 200, {"Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "该账号下找不到对应签名", "RequestId": request_id}
    if not query.get("TemplateCode"):
        return 200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "该账号下找不到对应模板", "RequestId": request_id}
    biz_id = f"{secrets.randbelow(10**9)}^0"
    now = time.time()
    with state.lock:
        state.sms.append(
            {
                "provider": "aliyun",
                "phone": query["PhoneNumbers"],
                "out_id": query.get("OutId", ""),
                "biz_id": biz_id,
                "template": query["TemplateCode"],
                "params": query.get("TemplateParam", ""),
                "at": now,
            }
        )
        state.delivered.append({"channel": "sms", "key": query.get("OutId", "") or biz_id, "at": now})
    return 200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}


def _china_day(at: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(at + 8 * 3600))


def _aliyun_query(state: State, query: dict, request_id: str) -> dict:
    """QuerySendDetails: PhoneNumber, SendDate (yyyyMMdd, China), PageSize 1-50, CurrentPage,
    optional BizId; records with SendStatus (1 waiting for a receipt, 2 failed, 3 delivered) and
    the OutId the sender gave."""
    for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
        if not query.get(name):
            return {"Code": "isv.INVALID_PARAMETERS", "Message": f"参数异常: {name}", "RequestId": request_id}
    try:
        size, page = int(query["PageSize"]), int(query["CurrentPage"])
    except ValueError:
        return {"Code": "isv.INVALID_PARAMETERS", "Message": "参数异常", "RequestId": request_id}
    if not 1 <= size <= 50 or page < 1:
        return {"Code": "isv.INVALID_PARAMETERS", "Message": "PageSize 取值范围 1~50", "RequestId": request_id}
    with state.lock:
        records = [
            r
            for r in state.sms
            if r["provider"] == "aliyun"
            and r["phone"] == query["PhoneNumber"]
            and _china_day(r["at"]) == query["SendDate"]
            and (not query.get("BizId") or r["biz_id"] == query["BizId"])
        ]
    shown = records[(page - 1) * size : page * size]
    return {
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id,
        "TotalCount": len(records),
        "SmsSendDetailDTOs": {
            "SmsSendDetailDTO": [
                {
                    "PhoneNum": r["phone"],
                    "SendStatus": 3,
                    "ErrCode": "DELIVERED",
                    "TemplateCode": r["template"],
                    "Content": r["params"],
                    "SendDate": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] + 8 * 3600)),
                    "ReceiveDate": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] + 8 * 3600 + 2)),
                    "OutId": r["out_id"],
                }
                for r in shown
            ]
        },
    }


# SendSms: "单次请求最多支持200个手机号"; SessionContext "注意长度需小于512字节".
TENCENT_MAX_NUMBERS = 200
TENCENT_SESSION_CONTEXT_BYTES = 512
# The fake Tencent Cloud knows one key pair too, the sandbox accounts'.
TENCENT_KEYS = {"sandbox-secret-id": "sandbox-secret-key"}
TC3_AUTH = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>[\d-]+)/(?P<service>\w+)/tc3_request, "
    r"SignedHeaders=(?P<signed>[\w;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def tencent(
    state: State, method: str, path: str, query: dict, body, headers=None, raw: bytes = b""
) -> tuple[int, dict]:
    from channels.providers.sms import tc3_signature

    headers = headers or {}
    request_id = secrets.token_hex(16)

    def error(code: str, message: str) -> tuple[int, dict]:
        return 200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}}

    if method != "POST" or path not in ("", "/"):
        return error("InvalidAction", "The requested API does not exist or is not supported by this method.")
    action = headers.get("X-TC-Action")
    if (
        action not in ("SendSms", "SendStatusStatistics", "PullSmsSendStatusByPhoneNumber")
        or headers.get("X-TC-Version") != "2021-01-11"
    ):
        return error(
            "InvalidAction",
            f"Action {headers.get('X-TC-Action')!r} of version {headers.get('X-TC-Version')!r} not found.",
        )
    auth = TC3_AUTH.match(headers.get("Authorization", ""))
    if auth is None:
        return error("AuthFailure.InvalidAuthorization", "Authorization header format error.")
    secret = TENCENT_KEYS.get(auth["id"])
    if secret is None:
        return error(
            "AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct."
        )
    try:
        timestamp = int(headers.get("X-TC-Timestamp", ""))
    except ValueError:
        return error("MissingParameter", "The request is missing a required parameter `X-TC-Timestamp`.")
    if abs(time.time() - timestamp) > 300:
        return error(
            "AuthFailure.SignatureExpire",
            "Signature expired. Timestamp and server time cannot differ by more than 5 minutes.",
        )
    signed = auth["signed"].split(";")
    wanted = tc3_signature(
        secret_key=secret,
        method=method,
        headers={name: headers.get(name, "") for name in signed},
        signed_headers=signed,
        payload=raw,
        timestamp=timestamp,
    )
    if auth["signature"] != wanted:
        return error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        )
    if not isinstance(body, dict):
        return error("InvalidParameter", "Request body is not valid JSON.")
    if action == "SendStatusStatistics":
        if not body.get("SmsSdkAppId"):
            return error("MissingParameter", "The request is missing a required parameter `SmsSdkAppId`.")
        stats = {"FeeCount": 0, "RequestCount": 0, "RequestSuccessCount": 0}
        return 200, {"Response": {"SendStatusStatistics": stats, "RequestId": request_id}}
    if action == "PullSmsSendStatusByPhoneNumber":
        return _tencent_pull(state, body, error, request_id)
    for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
        if not body.get(name):
            return error("MissingParameter", f"The request is missing a required parameter `{name}`.")
    params = body.get("TemplateParamSet") or []
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        return error(
            "InvalidParameterValue.TemplateParameterFormatError", "Verification code template parameter format error."
        )
    if not body.get("SignName"):
        return error("FailedOperation.MissingSignature", "No signature; domestic SMS needs one.")
    phones = body["PhoneNumberSet"]
    if not isinstance(phones, list):
        return error("InvalidParameter", "PhoneNumberSet must be an array of strings.")
    if len(phones) > TENCENT_MAX_NUMBERS:
        # PhoneNumberSet: "单次请求最多支持200个手机号"; beyond it the request is refused whole:
        # "LimitExceeded.PhoneNumberCountLimit: 调用接口单次提交的手机号个数超过200个".
        return error(
            "LimitExceeded.PhoneNumberCountLimit",
            "调用接口单次提交的手机号个数超过200个，请遵守 API 接口输入参数 PhoneNumberSet 描述。",
        )
    session = body.get("SessionContext", "")
    if not isinstance(session, str) or len(session.encode()) >= TENCENT_SESSION_CONTEXT_BYTES:
        # SessionContext: "注意长度需小于512字节" (the docs name no code for it: the generic one).
        return error("InvalidParameterValue", "SessionContext must be shorter than 512 bytes.")
    statuses = []
    for phone in phones:
        ok = isinstance(phone, str) and re.fullmatch(r"\+861[3-9]\d{9}", phone)
        serial = f"{secrets.randbelow(10**4)}:{secrets.token_hex(12)}" if ok else ""
        if ok:
            now = time.time()
            with state.lock:
                state.sms.append(
                    {
                        "provider": "tencent",
                        "phone": phone,
                        "session_context": body.get("SessionContext", ""),
                        "serial": serial,
                        "at": now,
                    }
                )
                # One number a request: its SessionContext names the message; a batch's is shared
                # by its numbers, each one message of its own.
                key = (session if len(phones) == 1 else f"{session}|{phone}") if session else serial
                state.delivered.append({"channel": "sms", "key": key, "phone": phone, "at": now})
        statuses.append(
            {
                "SerialNo": serial,
                "PhoneNumber": phone,
                "Fee": 1 if ok else 0,
                "SessionContext": session,
                "Code": "Ok" if ok else "InvalidParameterValue.IncorrectPhoneNumber",
                "Message": "send success" if ok else "incorrect number format",
                "IsoCode": "CN" if ok else "",
            }
        )
    return 200, {"Response": {"SendStatusSet": statuses, "RequestId": request_id}}


def _tencent_pull(state: State, body: dict, error, request_id: str) -> tuple[int, dict]:
    """PullSmsSendStatusByPhoneNumber: the status reports of one number between BeginTime and
    EndTime (unix seconds), Offset and Limit (at most 100), each with the sender's SessionContext.
    The fake reports every message it accepted as delivered, two seconds after it was sent."""
    for name in ("BeginTime", "Offset", "Limit", "PhoneNumber", "SmsSdkAppId"):
        if body.get(name) is None or body.get(name) == "":
            return error("MissingParameter", f"The request is missing a required parameter `{name}`.")
    if not isinstance(body["Limit"], int) or not 0 < body["Limit"] <= 100:
        return error("InvalidParameterValue.InvalidLimit", "Limit must be 1 to 100.")
    end = body.get("EndTime") or time.time()
    with state.lock:
        reports = [
            r
            for r in state.sms
            if r["provider"] == "tencent" and r["phone"] == body["PhoneNumber"] and body["BeginTime"] <= r["at"] <= end
        ]
    shown = reports[body["Offset"] : body["Offset"] + body["Limit"]]
    return 200, {
        "Response": {
            "PullSmsSendStatusSet": [
                {
                    "UserReceiveTime": int(r["at"]) + 2,
                    "CountryCode": "86",
                    "SubscriberNumber": r["phone"][3:],
                    "PhoneNumber": r["phone"],
                    "SerialNo": r["serial"],
                    "ReportStatus": "SUCCESS",
                    "Description": "DELIVRD",
                    "SessionContext": r["session_context"],
                }
                for r in shown
            ],
            "RequestId": request_id,
        }
    }


def _china_clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at + 8 * 3600))


def aliyun_reports(records: list[dict]) -> list[dict]:
    """Aliyun's SmsReport push for these accepted SMS: a JSON array, one report per message."""
    return [
        {
            "phone_number": r["phone"],
            "send_time": _china_clock(r["at"]),
            "report_time": _china_clock(r["at"] + 2),
            "success": not r.get("fail"),
            "err_code": "DELIVERED" if not r.get("fail") else "MK:0001",
            "err_msg": "用户接收成功" if not r.get("fail") else "空号",
            "sms_size": "1",
            "biz_id": r["biz_id"],
            "out_id": r["out_id"],
        }
        for r in records
    ]


def tencent_reports(records: list[dict]) -> list[dict]:
    """Tencent Cloud SMS's status callback for these accepted SMS: a JSON array."""
    return [
        {
            "user_receive_time": _china_clock(r["at"] + 2),
            "nationcode": "86",
            "mobile": r["phone"][3:],
            "report_status": "FAIL" if r.get("fail") else "SUCCESS",
            "errmsg": "MK:0001" if r.get("fail") else "DELIVRD",
            "description": "空号" if r.get("fail") else "用户短信送达成功",
            "sid": r["serial"],
            "ext": r["session_context"],
        }
        for r in records
    ]


def wechat_template_event(*, msg_id: str, openid: str, status: str = "success", at: float | None = None) -> str:
    """The official account's TEMPLATESENDJOBFINISH push, as XML (plain mode)."""
    return (
        "<xml><ToUserName><![CDATA[gh_hospital]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{int(at or time.time())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
        f"<MsgID>{msg_id}</MsgID><Status><![CDATA[{status}]]></Status></xml>"
    )


def wechat_signed_query(token: str, *, timestamp: int | None = None, nonce: str | None = None) -> dict:
    """The query WeChat adds to a push to the server URL: timestamp, nonce and their signature."""
    timestamp = str(timestamp or int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**9))
    digest = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()  # noqa: S324 (WeChat's)
    return {"signature": digest, "timestamp": timestamp, "nonce": nonce}


def _note_wechat_sent(state: State, path: str, body, answer: dict) -> None:
    """Keep accepted template and subscribe messages: WeChat pushes an event for each later."""
    kind = {
        "/wechat/cgi-bin/message/template/send": "template",
        "/wechat/cgi-bin/message/subscribe/send": "subscribe",
    }.get(path)
    if kind and isinstance(body, dict) and (answer.get("errcode") or 0) == 0 and answer.get("msgid"):
        with state.lock:
            state.wechat_sent.append(
                {"kind": kind, "msgid": str(answer["msgid"]), "openid": body.get("touser", ""), "at": time.time()}
            )


def wechat_subscribe_event(*, msg_id: str, openid: str, template_id: str = "", error_code: int = 0) -> str:
    """The mini program's subscribe_msg_sent_event push, as XML (plain mode)."""
    return (
        "<xml><ToUserName><![CDATA[gh_mini]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event>"
        f"<SubscribeMsgSentEvent><List><TemplateId><![CDATA[{template_id}]]></TemplateId><MsgID>{msg_id}</MsgID>"
        f"<ErrorCode>{error_code}</ErrorCode><ErrorStatus><![CDATA[{'success' if not error_code else 'fail'}]]>"
        "</ErrorStatus></List></SubscribeMsgSentEvent></xml>"
    )


def push_wechat_events(state: State, targets: dict) -> int:
    """WeChat's event pushes for the messages accepted so far, one signed POST each, to
    targets["wechat_template"] / ["wechat_subscribe"] = {"url": server URL, "token": token}."""
    import urllib.request

    with state.lock:
        pending = [m for m in state.wechat_sent if not m.get("pushed") and targets.get(f"wechat_{m['kind']}")]
        for m in pending:
            m["pushed"] = True
    for m in pending:
        target = targets[f"wechat_{m['kind']}"]
        if m["kind"] == "template":
            xml = wechat_template_event(msg_id=m["msgid"], openid=m["openid"])
        else:
            xml = wechat_subscribe_event(msg_id=m["msgid"], openid=m["openid"])
        query = "&".join(f"{k}={v}" for k, v in wechat_signed_query(target["token"]).items())
        sep = "&" if "?" in target["url"] else "?"
        request = urllib.request.Request(  # noqa: S310 (a URL the caller gave)
            f"{target['url']}{sep}{query}", data=xml.encode(), headers={"Content-Type": "text/xml"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30):  # noqa: S310
                pass
        except OSError:
            with state.lock:  # not taken: pushed again next time
                m["pushed"] = False
            raise
    return len(pending)


def push_receipts(state: State, targets: dict) -> dict:
    """Push the status reports of every SMS accepted and not yet reported to the callback URLs in
    `targets` ({"aliyun": url, "tencent": url}), as each provider does: batched (at most
    `batch` a post), some duplicated (`duplicate_share`), some for ids no one sent (`unknown`), a
    share reported as not delivered (`fail_share`). Returns what was posted and the answers."""
    batch = int(targets.get("batch", 100))
    late_share = float(targets.get("late_share", 0))
    now = time.time()
    with state.lock:
        # Some reports come late: held back for a later push, up to ten seconds.
        pending = [
            r
            for r in state.sms
            # Only those of a provider it has an address for: the others wait for a push that has one.
            if not r.get("reported")
            and targets.get(r["provider"])
            and (now - r["at"] > 10 or random.random() >= late_share)  # noqa: S311
        ]
        for r in pending:
            r["reported"] = True
    for r in pending:
        r["fail"] = random.random() < float(targets.get("fail_share", 0))  # noqa: S311 (a simulation)
    try:
        posted = _post_reports(pending, targets, batch)
        posted["wechat_events"] = push_wechat_events(state, targets)
        return posted
    except OSError:
        with state.lock:  # the center did not take them: pushed again next time
            for r in pending:
                r["reported"] = False
        raise


def _post_reports(pending: list[dict], targets: dict, batch: int) -> dict:
    import urllib.request

    posted = {"reports": 0, "answers": []}
    for provider, build in (("aliyun", aliyun_reports), ("tencent", tencent_reports)):
        url = targets.get(provider)
        if not url:
            continue
        records = [r for r in pending if r["provider"] == provider]
        dupes = [r for r in records if random.random() < float(targets.get("duplicate_share", 0))]  # noqa: S311
        fakes = [
            {
                "provider": provider,
                "phone": "+8613900000000",
                "biz_id": f"{secrets.randbelow(10**9)}^0",
                "out_id": f"nobody-{secrets.token_hex(4)}",
                "serial": f"0:{secrets.token_hex(12)}",
                "session_context": f"nobody-{secrets.token_hex(4)}",
                "at": time.time(),
            }
            for _ in range(int(targets.get("unknown", 0)))
        ]
        reports = build(records + dupes + fakes)
        for start in range(0, len(reports), batch):
            chunk = reports[start : start + batch]
            request = urllib.request.Request(  # noqa: S310 (a URL the test gave)
                url, data=json.dumps(chunk, ensure_ascii=False).encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (a URL the test gave)
                posted["answers"].append([answer.status, json.loads(answer.read() or b"null")])
            posted["reports"] += len(chunk)
    return posted


def jpush_received(state: State, query: dict) -> tuple[int, object]:
    """JPush's report API, GET /v3/received/detail?msg_ids=: per push, how many phones got it. The
    fake says every push it accepted reached one Android phone; an unknown msg_id, nothing."""
    ids = [i for i in (query.get("msg_ids") or "").split(",") if i]
    if not ids or len(ids) > 100:
        return 400, {"error": {"code": 3002, "message": "msg_ids 参数错误: 1 到 100 个"}}
    with state.lock:
        known = {msg_id for msg_id, _ in state.pushes.values()}
    return 200, [
        {
            "msg_id": i,
            "jpush_received": None,
            "android_received": 1 if i in known else None,
            "ios_apns_sent": None,
            "ios_apns_received": None,
            "ios_msg_received": None,
        }
        for i in ids
    ]


PROVIDERS = {"/wechat": wechat, "/wecom": wecom, "/jpush": jpush, "/aliyun": aliyun, "/tencent": tencent}


# How long each provider drops a repeat, as documented: WeChat's client_msg_id "10分钟有效"; a JPush
# cid answers the first push's result; WeCom's duplicate check lasts duplicate_check_interval.
WECHAT_CLIENT_MSG_ID_WINDOW = 600
JPUSH_CID_WINDOW = 86400


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:24]


def _ledger(state: State, path: str, query: dict, body, answer: dict) -> None:
    """Record what reached a person for an accepted send (SMS record themselves), keyed so that a
    repeat the real provider would drop is not counted twice."""
    if not isinstance(body, dict) or (answer.get("errcode") or 0) != 0 or answer.get("error"):
        return
    now = state.now()  # the fake's clock (POST /_advance moves it), as the providers' windows use
    entry = None
    if path == "/wechat/cgi-bin/message/template/send":
        key = _digest(body.get("touser"), body.get("client_msg_id") or secrets.token_hex(8))
        entry = ("wechat_oa_template", key, WECHAT_CLIENT_MSG_ID_WINDOW if body.get("client_msg_id") else 0)
    elif path == "/wechat/cgi-bin/message/subscribe/send":
        entry = ("wechat_mini_subscribe", _digest(body.get("touser"), body.get("template_id"), body.get("data")), 0)
    elif path == "/jpush/v3/push":
        entry = ("app_push", _digest(body.get("cid") or secrets.token_hex(8)), JPUSH_CID_WINDOW)
    elif path == "/wecom/cgi-bin/message/send":
        window = int(body.get("duplicate_check_interval", 1800)) if body.get("enable_duplicate_check") else 0
        entry = ("wecom_app", _digest(body.get("touser"), body.get("markdown") or body.get("text")), window)
    elif path == "/wecom/cgi-bin/webhook/send":
        entry = ("wecom_robot", _digest(query.get("key"), body.get(body.get("msgtype", ""), {})), 0)
    if entry is None:
        return
    channel, key, window = entry
    with state.lock:
        first = state.first_seen.get((channel, key))
        if window and first is not None and now - first < window:
            return  # the provider drops this repeat
        state.first_seen[(channel, key)] = now
        state.delivered.append({"channel": channel, "key": key, "at": now})


def _draw_latency(state: State) -> float:
    if state.late_share and random.random() < state.late_share:  # noqa: S311 (a simulation, not a secret)
        return state.late_ms
    if state.latency_max_ms > state.latency_ms:
        return random.uniform(state.latency_ms, state.latency_max_ms)  # noqa: S311
    return state.latency_ms


class Answer:
    """What the fake answers one request: after `delay` seconds, `status` with a JSON `payload`
    (or `text`, an answer that is not JSON), or nothing at all (`drop`: the connection closes)."""

    def __init__(self, status=200, payload=None, *, text=None, delay=0.0, drop=False):
        self.status, self.payload, self.text, self.delay, self.drop = status, payload, text, delay, drop

    def encoded(self) -> tuple[bytes, str]:
        if self.text is not None:
            return self.text.encode(), "text/html; charset=utf-8"
        return json.dumps(self.payload, ensure_ascii=False).encode(), "application/json; charset=utf-8"


def answer_for(state: State, method: str, target: str, headers, raw: bytes) -> Answer:
    """One request, as the providers would take it: acted on first (the ledger, the records),
    answered after the latency, so an answer later than the client's timeout is a message sent all
    the same (the ambiguous case). Runs on the server's event loop; it never waits itself."""
    url = urlparse(target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    if headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    else:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
    if url.path.startswith("/_"):
        return _control(state, method, url.path, body)
    with state.lock:
        state.calls.append({"method": method, "path": url.path, "query": query, "body": body, "at": time.time()})
        script = state.scripts.get(url.path)
        scripted = script.pop(0) if script else None
    if scripted and scripted.get("drop"):
        # The connection breaks before the request is acted on: no answer, no record.
        return Answer(drop=True)
    if scripted and "json" in scripted:
        return Answer(scripted.get("status", 200), scripted["json"], delay=scripted.get("latency_ms", 0) / 1000)
    if scripted and "text" in scripted:  # an answer that is not JSON: a proxy's HTML error page, …
        return Answer(scripted.get("status", 200), text=scripted["text"], delay=scripted.get("latency_ms", 0) / 1000)
    status, payload = _provider_answer(state, method, url, query, body, headers, raw)
    if status == 200:
        _ledger(state, url.path, query, body, payload)
        _note_wechat_sent(state, url.path, body, payload)
    delay = scripted.get("latency_ms", 0) if scripted else _draw_latency(state)
    return Answer(status, payload, delay=delay / 1000)


def _provider_answer(state: State, method: str, url, query: dict, body, headers, raw: bytes) -> tuple[int, dict]:
    if url.path == "/" and headers.get("X-TC-Action"):
        # Tencent Cloud's own SDK posts to the host's root, as to sms.tencentcloudapi.com.
        return tencent(state, method, "/", query, body, headers, raw=raw)
    if url.path == "/jpush/v3/received/detail":  # JPush's report host, report.jpush.cn
        return jpush_received(state, query)
    for prefix, provider in PROVIDERS.items():
        if url.path == prefix or url.path.startswith(prefix + "/"):
            # Headers go as they came (case-insensitive, as HTTP header names are).
            extra = {"raw": raw} if provider is tencent else {}
            return provider(state, method, url.path[len(prefix) :], query, body, headers, **extra)
    return 404, {"errcode": 404, "errmsg": "not found"}


def _control(state: State, method: str, path: str, body) -> Answer:
    with state.lock:
        if path == "/_calls" and method == "GET":
            return Answer(200, list(state.calls))
        if path == "/_calls" and method == "DELETE":
            state.calls.clear()
            return Answer(200, {"ok": True})
        if path == "/_script" and method == "POST":
            responses = body.get("responses") or [{}]
            for r in responses:
                r.setdefault("latency_ms", body.get("latency_ms", 0))
            state.scripts.setdefault(body["path"], []).extend(responses)
            return Answer(200, {"ok": True})
        if path == "/_latency" and method == "POST":
            state.latency_ms = int(body.get("ms", 0))
            state.latency_max_ms = int(body.get("max_ms", 0))
            state.late_share = float(body.get("late_share", 0))
            state.late_ms = int(body.get("late_ms", 0))
            return Answer(200, {"ok": True})
        if path == "/_signs" and method == "POST":
            state.signs.update({name: int(status) for name, status in body.items()})
            return Answer(200, {"ok": True})
        if path == "/_delivered" and method == "GET":
            return Answer(200, list(state.delivered))
        if path == "/_expire_tokens" and method == "POST":
            state.tokens.clear()
            state.stable.clear()
            return Answer(200, {"ok": True})
        if path == "/_wecom_apps" and method == "POST":
            state.wecom_apps[(body["corpid"], body["corpsecret"])] = int(body["agentid"])
            return Answer(200, {"ok": True})
        if path == "/_advance" and method == "POST":
            state.offset += float(body.get("seconds", 0))
            return Answer(200, {"ok": True})
        if path == "/_reset" and method == "POST":
            state.reset()
            return Answer(200, {"ok": True})
    return Answer(404, {"errcode": 404, "errmsg": "unknown control"})


class FakeServer:
    """The fake providers on an asyncio event loop in a daemon thread: HTTP/1.1 with keep-alive
    (every answer has a length), each answer's latency an `asyncio.sleep`, so thousands of
    requests wait at once without a thread each and the fake is not the ceiling of a benchmark.
    `server_address` says where; `shutdown()` stops it."""

    def __init__(self, state: State, host: str, port: int):
        self.state = state
        self.loop = uvloop.new_event_loop()  # uvicorn's loop, already a dependency: less CPU per answer
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(host, port, ready), daemon=True)
        self.thread.start()
        ready.wait()
        if self.failure is not None:
            raise self.failure

    def _run(self, host: str, port: int, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.failure = None
        try:
            # A benchmark's burst of new connections waits in the backlog instead of being refused.
            self.server = self.loop.run_until_complete(asyncio.start_server(self._client, host, port, backlog=4096))
        except OSError as err:
            self.failure = err
            ready.set()
            return
        self.server_address = self.server.sockets[0].getsockname()[:2]
        ready.set()
        self.loop.run_forever()

    def shutdown(self) -> None:
        async def stop():
            self.server.close()
            # Connections still open (kept alive by clients) end here, their tasks with them.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self.loop)
            self.thread.join(timeout=5)
            self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                head = b""
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    head += header
                headers = http.client.parse_headers(io.BytesIO(head + b"\r\n"))
                length = int(headers.get("Content-Length") or 0)
                raw = await reader.readexactly(length) if length else b""
                if target.split("?")[0] == "/_receipts" and method == "POST":
                    # It posts to the center's callbacks, blocking: off the loop.
                    body = json.loads(raw) if raw else {}
                    answer = Answer(200, await self.loop.run_in_executor(None, push_receipts, self.state, body or {}))
                else:
                    answer = answer_for(self.state, method, target, headers, raw)
                if answer.drop:
                    break
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                data, content_type = answer.encoded()
                reason = HTTPStatus(answer.status).phrase if answer.status in HTTPStatus._value2member_map_ else ""
                writer.write(
                    f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                if headers.get("Connection", "").lower() == "close":
                    break
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # a client that went away (a killed worker, a timeout) is part of the game
        except asyncio.CancelledError:
            pass  # shutdown(): ends quietly (asyncio logs a connection task that ends cancelled)
        finally:
            writer.close()


def serve(host: str = "127.0.0.1", port: int = 8081, latency_ms: int = 0) -> FakeServer:
    """A started server (on its own event loop, in a daemon thread)."""
    state = State()
    state.latency_ms = latency_ms
    return FakeServer(state, host, port)
