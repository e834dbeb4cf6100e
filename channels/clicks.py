"""Clicks: a message's link goes through a short signed redirect, `/r/<token>`, that records
`clicked` once per delivery and forwards.

The token names the delivery and the link's platform form (h5, app), never a URL: the redirect
forwards only to the link the delivery itself carries, which was rendered from a catalog link
target, so it cannot be turned into an open redirect. Tracking is on when CLICK_BASE_URL (the
center's public address) is set; without it links go out as they are.
"""

from django.conf import settings
from django.core import signing
from django.utils import timezone

from .models import ChangeSource, Delivery, DeliveryStatus
from .timeline import delivery_progress

SALT = "notifycenter.click"
PLATFORMS = {"h": "h5", "a": "app"}


def click_token(delivery_id: int, platform: str) -> str:
    short = {v: k for k, v in PLATFORMS.items()}[platform]
    return signing.Signer(salt=SALT).sign(f"{delivery_id}.{short}")


def tracked_url(delivery: Delivery, platform: str, url: str) -> str:
    """The link as sent: through the redirect when tracking is on."""
    base = getattr(settings, "CLICK_BASE_URL", "")
    if not base or not url or delivery.pk is None:
        return url
    return f"{base.rstrip('/')}/r/{click_token(delivery.pk, platform)}"


def click_follow(*, token: str) -> tuple[Delivery, str] | None:
    """The delivery and platform a genuine token names (None for a forged or broken one), with
    `clicked` recorded on its timeline the first time."""
    try:
        value = signing.Signer(salt=SALT).unsign(token)
        pk, short = value.split(".")
        platform = PLATFORMS[short]
        delivery = Delivery.objects.filter(pk=int(pk)).only("pk", "content", "status").first()
    except (signing.BadSignature, ValueError, KeyError):
        return None
    if delivery is None:
        return None
    if delivery.status != DeliveryStatus.CLICKED:
        delivery_progress(
            delivery_id=delivery.pk, status=DeliveryStatus.CLICKED, at=timezone.now(), source=ChangeSource.CLICK
        )
    return delivery, platform
