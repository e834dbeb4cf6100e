"""A message as the apps read it, in the list answer and in live events alike.

The stored link (and each button's) holds every platform's form; an app names its platform
(`mini_program`, `h5`, `app`) and gets that form alone as `url`.
"""

from django.utils import timezone

from .models import InboxMessage

PLATFORMS = ("mini_program", "h5", "app")


def link_for_platform(link: dict, platform: str | None) -> dict:
    """The link as one platform opens it; every form when no platform is named."""
    if not link or platform is None:
        return link or {}
    return {
        "target": link.get("target"),
        "route": link.get("route"),
        "params": link.get("params", {}),
        "platform": platform,
        "url": link.get(platform),
    }


def _time(value):
    return timezone.localtime(value).isoformat() if value is not None else None


def message_answer(message: InboxMessage, platform: str | None = None) -> dict:
    """The message's fields as the API answers them, links resolved for `platform`. `message` is
    a model instance or anything with its attributes (a list page's `selectors.PageRow`)."""
    return {
        "id": message.pk,
        "category": message.category,
        "title": message.title,
        "body": message.body,
        "link": link_for_platform(message.link, platform),
        "actions": [
            {**action, "link": link_for_platform(action.get("link") or {}, platform)}
            for action in message.actions or ()
        ],
        "template_code": message.template_code,
        "created_at": _time(message.created_at),
        "seen_at": _time(message.seen_at),
        "read_at": _time(message.read_at),
        "archived_at": _time(message.archived_at),
        "unread": message.read_at is None,
        "unseen": message.seen_at is None,
    }


def answer_for_platform(answer: dict, platform: str | None) -> dict:
    """A stored answer (every platform's form) narrowed to one platform's links."""
    if platform is None:
        return answer
    return {
        **answer,
        "link": link_for_platform(answer.get("link") or {}, platform),
        "actions": [
            {**action, "link": link_for_platform(action.get("link") or {}, platform)}
            for action in answer.get("actions") or ()
        ],
    }
