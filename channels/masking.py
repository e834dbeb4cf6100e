"""Masks for personal data in logs and admin lists: enough to recognise, not to use."""

import re


def mask_phone(phone: str) -> str:
    if not phone:
        return ""
    digits = phone.strip()
    if len(digits) <= 7:
        return digits[:2] + "*" * (len(digits) - 2)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_id(value: str) -> str:
    """An openid, unionid or registration id: first and last four characters."""
    if not value:
        return ""
    if len(value) <= 8:
        return value[:2] + "*" * (len(value) - 2)
    return f"{value[:4]}****{value[-4:]}"


def mask_secret(value: str) -> str:
    if not value:
        return ""
    return "****" + value[-4:] if len(value) > 8 else "****"


def mask_address(channel: str, address: str) -> str:
    """A delivery's address as it is kept and shown: a phone or ids masked; the inbox's
    `audience:external id` and a group robot's "robot" are no personal address."""
    if channel == "sms":
        return mask_phone(address)
    if channel in ("inbox", "wecom_robot"):
        return address
    return ",".join(mask_id(part) for part in address.split(","))


def _phone_forms(phones: list[str]) -> list[str]:
    """Each phone as kept, then in the other forms it may come back in, longest first (so that
    `+8613…` is masked whole before the `13…` inside it is looked for)."""
    derived = set()
    for phone in phones:
        national = phone.strip().removeprefix("+").removeprefix("86") if phone.startswith(("+86", "86")) else phone
        national = national.strip().lstrip("+")
        if len(national) >= 6:  # a derived form short enough to be part of anything is left alone
            derived.update((national, "86" + national, "+86" + national))
    return phones + sorted(derived - set(phones), key=len, reverse=True)


def scrub(value, address: str, channel: str):
    """A provider's answer (JSON) with every copy of an address in it masked: Tencent echoes the
    phone in SendStatusSet, Aliyun's QuerySendDetails in PhoneNum, WeCom the user in invaliduser.
    A phone is looked for in each form a provider may echo it in: as kept (`+8613912345678`),
    without the country code (`13912345678`, Aliyun's), and with it (`8613912345678`)."""
    parts = [p for p in address.replace("|", ",").split(",") if len(p) > 2]
    if channel == "sms":
        parts = _phone_forms(parts)
    if not parts:
        return value

    def walk(item):
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, str):
            for part in parts:
                if part in item:
                    item = item.replace(part, mask_address(channel, part))
        return item

    return walk(value)


# What a provider's call may carry about a person, found without knowing whose it is: a
# mainland mobile number (with or without +86), and the fields that name a phone or an openid in
# Aliyun's, Tencent's and WeChat's reports (JSON or XML).
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86)?1[3-9][0-9]{9}(?![0-9])")
_PHONE_KEYS = ("phone_number", "mobile", "PhoneNum", "PhoneNumber", "SubscriberNumber")
_ADDRESS_KEYS = "|".join((*_PHONE_KEYS, "FromUserName", "ToUserName"))
_JSON_ADDRESS = re.compile(rf'("({_ADDRESS_KEYS})"\s*:\s*")([^"]*)(")')
_XML_ADDRESS = re.compile(rf"(<({_ADDRESS_KEYS})>(?:<!\[CDATA\[)?)(.*?)((?:\]\]>)?</\2>)", re.S)


def _masked_field(match: re.Match) -> str:
    mask = mask_phone if match[2] in _PHONE_KEYS else mask_id
    return match[1] + mask(match[3]) + match[4]


def mask_addresses_in_text(text: str) -> str:
    """A raw body we refused (a forged call, a report too late) with every phone and openid in
    it masked: it is kept to show operations who knocks and with what, never whom it was about."""
    text = _XML_ADDRESS.sub(_masked_field, _JSON_ADDRESS.sub(_masked_field, text))
    return _MOBILE.sub(lambda m: mask_phone(m[0]), text)
