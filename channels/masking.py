"""Masks for personal data in logs and admin lists: enough to recognise, not to use."""


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
