"""What the receipt modules share: China-time parsing and the URL token check."""

import hmac
from datetime import datetime, timedelta, timezone

from . import Refused

CHINA = timezone(timedelta(hours=8))


def china_time(text: str) -> datetime | None:
    """Providers report "2026-11-29 10:00:00" in China time."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except (AttributeError, ValueError):
        return None


def check_url_token(request, account) -> None:
    """Aliyun and Tencent sign nothing they push: the callback URL set in their console carries a
    secret (`?token=`, the account's credential `callback_token`), compared in constant time."""
    wanted = (account.credentials or {}).get("callback_token", "")
    given = request.GET.get("token", "")
    if not wanted or not hmac.compare_digest(wanted.encode(), given.encode()):
        raise Refused("bad or missing callback token")
