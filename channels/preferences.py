"""People's preferences, beside the recipient directory: a global switch per channel, and a
switch per category × channel, over their audience's defaults.

A switch a person did not set falls back to their audience's default, then to "on". A channel
switched off globally is off for every category. Marketing needs an explicit "on" from the person
for that category and channel (an opt-in). Critical messages do not ask (scenarios/policies.py).
"""

from django.db import transaction

from inbox.models import Category

from .models import Channel, Preference, PreferenceDefault, Recipient
from .rows import rows_where


class PreferenceError(ValueError):
    """A body the preferences API refuses, naming the offending fields (answered as 400)."""

    error_code = "invalid_preferences"
    http_status = 400

    def __init__(self, fields: dict[str, list[str]]):
        self.message = "The preferences name an unknown channel or category, or a value that is not true/false."
        super().__init__(self.message)
        self.fields = fields


def preference_errors(*, channels: dict, categories: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not isinstance(channels, dict):
        return {"channels": ["An object of channel → true/false."]}
    if not isinstance(categories, dict):
        return {"categories": ["An object of category → {channel → true/false}."]}
    for channel, value in channels.items():
        if channel not in Channel.values:
            errors.setdefault(f"channels.{channel}", []).append(f"Unknown channel; one of {', '.join(Channel.values)}.")
        elif not isinstance(value, bool):
            errors.setdefault(f"channels.{channel}", []).append("true or false.")
    for category, switches in categories.items():
        if category not in Category.values:
            errors.setdefault(f"categories.{category}", []).append(
                f"Unknown category; one of {', '.join(Category.values)}."
            )
            continue
        if not isinstance(switches, dict):
            errors.setdefault(f"categories.{category}", []).append("An object of channel → true/false.")
            continue
        for channel, value in switches.items():
            if channel not in Channel.values:
                errors.setdefault(f"categories.{category}.{channel}", []).append("Unknown channel.")
            elif not isinstance(value, bool):
                errors.setdefault(f"categories.{category}.{channel}", []).append("true or false.")
    return errors


def preference_put(*, recipient: Recipient, channels: dict, categories: dict) -> Preference:
    """Change the switches named; the rest stay as they were. Raises PreferenceError."""
    errors = preference_errors(channels=channels, categories=categories)
    if errors:
        raise PreferenceError(errors)
    with transaction.atomic():
        pref, _ = Preference.objects.select_for_update().get_or_create(recipient=recipient)
        pref.channels = {**pref.channels, **channels}
        merged = {k: dict(v) for k, v in pref.categories.items()}
        for category, switches in categories.items():
            merged.setdefault(category, {}).update(switches)
        pref.categories = merged
        pref.save()
    return pref


def preferences_for(recipient_ids) -> dict[int, Preference]:
    """The saved preferences of these people (those who never said anything have none)."""
    ids = list(set(recipient_ids))
    found = rows_where(Preference, "recipient_id = ANY(%s)", [ids])
    if found is None:
        found = Preference.objects.filter(recipient_id__in=ids)
    return {p.recipient_id: p for p in found}


def preference_defaults() -> dict[str, PreferenceDefault]:
    return {d.audience: d for d in PreferenceDefault.objects.all()}


def allows(
    preference: Preference | None,
    default: PreferenceDefault | None,
    *,
    channel: str,
    category: str,
    opt_in: bool = False,
) -> bool:
    """Whether this person takes this category over this channel (opt_in: marketing)."""
    own_channels = preference.channels if preference else {}
    own_categories = (preference.categories if preference else {}).get(category) or {}
    if opt_in:
        return own_categories.get(channel) is True and own_channels.get(channel, True) is not False
    base_channels = default.channels if default else {}
    base_categories = (default.categories if default else {}).get(category) or {}
    channel_on = own_channels.get(channel, base_channels.get(channel, True))
    category_on = own_categories.get(channel, base_categories.get(channel, True))
    return bool(channel_on and category_on)


def preference_view(preference: Preference | None, default: PreferenceDefault | None) -> dict:
    """Every switch as it now stands for this person (their own over the audience's defaults)."""
    return {
        "channels": {c: allows(preference, default, channel=c, category="") for c in Channel.values},
        "categories": {
            cat: {c: allows(preference, default, channel=c, category=cat) for c in Channel.values}
            for cat in Category.values
        },
    }
