"""Reason codes and stored reasons in the console's language: the engine stores stable codes
(`no_address`) and English reasons (`cancelled by inquiry.declined #12`); people read Chinese."""

import re

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

REASONS = {
    "no_address": gettext_lazy("no address on this channel"),
    "no_consent": gettext_lazy("no subscribe consent left"),
    "no_account": gettext_lazy("no channel account"),
    "no_recipient": gettext_lazy("no recipient"),
    "no_check": gettext_lazy("not checked"),
    "no_cid": gettext_lazy("no push id from the provider"),
    "channel_not_implemented": gettext_lazy("channel not built yet"),
    "too_late": gettext_lazy("too late: past its time and grace"),
    "cancelled": gettext_lazy("cancelled"),
    "cancelled_by_operator": gettext_lazy("cancelled in the console"),
    "opted_out": gettext_lazy("opted out"),
    "quiet_hours": gettext_lazy("quiet hours"),
    "capped": gettext_lazy("over the cap"),
    "duplicate": gettext_lazy("duplicate"),
}
_PATTERNS = [
    (re.compile(r"^cancelled by (?P<event>[\w.]+) #(?P<id>\d+)$"), gettext_lazy("cancelled by %(event)s #%(id)s")),
    (re.compile(r"^cancelled by event #(?P<id>\d+)$"), gettext_lazy("cancelled by event #%(id)s")),
    (re.compile(r"^moved by (?P<event>[\w.]+) #(?P<id>\d+)$"), gettext_lazy("moved by %(event)s #%(id)s")),
    (re.compile(r"^cancelled in the admin by (?P<user>.+)$"), gettext_lazy("cancelled in the console by %(user)s")),
]


# The providers' own codes that a channel admin meets (a connection test, a failed delivery),
# said as what to do about them; the provider's words stay on the attempt. Aliyun and Tencent
# codes are their own strings; WeChat, WeCom and JPush codes are numbers, mostly distinct between
# them (the few they share mean the same thing, but for 45009: PROVIDER_CODES_BY_CHANNEL).
_BLACKLIST = gettext_lazy("the number is on the blacklist (unsubscribed or complained)")
PROVIDER_CODES = {
    # WeChat (official account, mini program) and WeCom errcodes
    "40001": gettext_lazy("secret or access token not accepted: check the AppSecret (WeCom: the app's Secret)"),
    "40013": gettext_lazy("invalid AppID (WeCom: CorpID)"),
    "40125": gettext_lazy("invalid AppSecret: copy it again from the console (a reset AppSecret retires the old one)"),
    "40164": gettext_lazy("this server's IP is not on the account's IP whitelist"),
    "60020": gettext_lazy("this server's IP is not on the WeCom app's trusted IPs"),
    "40014": gettext_lazy("access token invalid (fetched again by itself)"),
    "42001": gettext_lazy("access token expired (fetched again by itself)"),
    "40037": gettext_lazy("invalid template id: not in this account's templates"),
    "40003": gettext_lazy("invalid openid: not an openid of this AppID"),
    "43004": gettext_lazy("the person does not follow the official account"),
    "43101": gettext_lazy("the person has not accepted this subscribe message"),
    "47003": gettext_lazy("template parameters refused (type or length)"),
    "41030": gettext_lazy("invalid page: no such published mini-program page"),
    "45009": gettext_lazy("over the provider's call limit"),
    "45011": gettext_lazy("over the provider's calls a minute"),
    "93000": gettext_lazy("invalid robot webhook key: the robot was removed or its key reset"),
    "40056": gettext_lazy("invalid agentid: check the WeCom app's AgentId"),
    "301002": gettext_lazy("the AgentId is another app's: give the AgentId of the app whose Secret is configured"),
    "81013": gettext_lazy("the WeCom user is not in the app's visible range"),
    # JPush
    "1004": gettext_lazy("AppKey and Master Secret not accepted"),
    "1011": gettext_lazy("no device found for the registration id"),
    "2002": gettext_lazy("over JPush's calls in the time window"),
    # Aliyun SMS
    "InvalidAccessKeyId.NotFound": gettext_lazy("AccessKey ID not found"),
    "SignatureDoesNotMatch": gettext_lazy("AccessKey Secret does not match the AccessKey ID"),
    "isp.RAM_PERMISSION_DENY": gettext_lazy("the AccessKey's RAM user may not send SMS"),
    "isv.BLACK_KEY_CONTROL_LIMIT": _BLACKLIST,
    "isv.MOBILE_NUMBER_ILLEGAL": gettext_lazy("invalid phone number"),
    "isv.SMS_SIGNATURE_ILLEGAL": gettext_lazy("no such approved signature under this account"),
    "isv.SMS_TEMPLATE_ILLEGAL": gettext_lazy("no such approved template under this account"),
    "isv.BUSINESS_LIMIT_CONTROL": gettext_lazy("the provider's flow control for this number"),
    "isv.AMOUNT_NOT_ENOUGH": gettext_lazy("the account's balance is used up"),
    # Tencent Cloud SMS
    "AuthFailure.SecretIdNotFound": gettext_lazy("SecretId not found"),
    "AuthFailure.SignatureFailure": gettext_lazy("SecretKey does not match the SecretId"),
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": gettext_lazy("the SdkAppId is not this SecretId's"),
    "FailedOperation.PhoneNumberInBlacklist": _BLACKLIST,
    "FailedOperation.TemplateIncorrectOrUnapproved": gettext_lazy("the template id is wrong or not approved"),
    "FailedOperation.SignatureIncorrectOrUnapproved": gettext_lazy("the signature is wrong or not approved"),
    "FailedOperation.InsufficientBalanceInSmsPackage": gettext_lazy("the SMS package is used up"),
    "LimitExceeded.PhoneNumberDailyLimit": gettext_lazy("the number's daily limit is reached"),
    "InvalidParameterValue.IncorrectPhoneNumber": gettext_lazy("invalid phone number"),
    # the engine's words for a call that got no usable answer
    "connection_error": gettext_lazy("could not connect to the provider (address, DNS or firewall)"),
    "connect_timeout": gettext_lazy("could not connect to the provider in time"),
    "timeout": gettext_lazy("no answer in time: the provider may have sent it"),
    "bad_response": gettext_lazy("an answer that is not the provider's (a proxy?)"),
    "invalid_param": gettext_lazy("a template parameter does not fit WeChat's type"),
}
# A code whose meaning depends on the channel.
PROVIDER_CODES_BY_CHANNEL = {
    ("wecom_robot", "45009"): gettext_lazy("over the robot's 20 messages a minute"),
    ("wecom_app", "45009"): gettext_lazy("over WeCom's calls a minute"),
    ("wechat_oa_template", "45009"): gettext_lazy("today's call quota is used up"),
    ("wechat_mini_subscribe", "45009"): gettext_lazy("today's call quota is used up"),
}


def provider_words(code: str, channel: str = "") -> str:
    """What a provider's code means to a channel admin, in the active language; "" if unknown."""
    code = str(code or "")
    words = PROVIDER_CODES_BY_CHANNEL.get((channel, code)) or PROVIDER_CODES.get(code)
    return str(words) if words else ""


def reason_label(reason: str, channel: str = "") -> str:
    """A stored code or reason in the active language, with the code kept beside it so that
    people and the documentation can still find it; unknown ones as they are. A provider's code
    is said for `channel` where its meaning depends on it."""
    if not reason:
        return ""
    if reason in REASONS:
        return f"{REASONS[reason]} ({reason})"
    if words := provider_words(reason, channel):
        return f"{words} ({reason})"
    for pattern, text in _PATTERNS:
        match = pattern.match(reason)
        if match:
            return str(text) % match.groupdict()
    return _(reason) if reason else ""
