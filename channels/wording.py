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


def reason_label(reason: str) -> str:
    """A stored code or reason in the active language, with the code kept beside it so that
    people and the documentation can still find it; unknown ones as they are."""
    if not reason:
        return ""
    if reason in REASONS:
        return f"{REASONS[reason]} ({reason})"
    for pattern, text in _PATTERNS:
        match = pattern.match(reason)
        if match:
            return str(text) % match.groupdict()
    return _(reason) if reason else ""
