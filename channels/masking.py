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
