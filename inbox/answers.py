"""A message as the apps read it, in the list answer and in live events alike.

The stored link (and each button's) holds every platform's form; an app names its platform
(`mini_program`, `h5`, `app`) and gets that form alone as `url`.

A form whose scheme runs code where the app opens it (`javascript:`, `data:`…) is answered as ""
(no link): a link target is written by operations staff and its parameters come from event data,
and the H5 page or web view that opens it holds the person's token.
"""

import re

from django.utils import timezone

from .models import InboxMessage

PLATFORMS = ("mini_program", "h5", "app")
LINK_FORMS = (*PLATFORMS, "url")

# Schemes a browser or web view runs or reads locally instead of navigating to a page.
UNSAFE_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "filesystem"})
# Browsers drop ASCII tab and newlines anywhere in a URL, and leading C0 controls and spaces.
_IGNORED = re.compile(r"[\x00-\x20\x7f]")
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")


def url_is_safe(url) -> bool:
    """False for a URL whose scheme (as a browser reads it) is in UNSAFE_SCHEMES."""
    if not isinstance(url, str) or not url or url.startswith(("/", "https://", "http://")):
        return True
    match = _SCHEME.match(_IGNORED.sub("", url).lower())
    return match is None or match[1] not in UNSAFE_SCHEMES


def _safe_forms(link: dict) -> dict:
    if all(url_is_safe(link.get(form)) for form in LINK_FORMS):
        return link
    return {key: ("" if key in LINK_FORMS and not url_is_safe(value) else value) for key, value in link.items()}


def link_for_platform(link: dict, platform: str | None) -> dict:
    """The link as one platform opens it; every form when no platform is named."""
    if not link:
        return {}
    link = _safe_forms(link)
    if platform is None:
        return link
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
    return {
        **answer,
        "link": link_for_platform(answer.get("link") or {}, platform),
        "actions": [
            {**action, "link": link_for_platform(action.get("link") or {}, platform)}
            for action in answer.get("actions") or ()
        ],
    }
