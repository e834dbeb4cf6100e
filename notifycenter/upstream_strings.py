"""Strings of Django's admin that its own zh_Hans catalog lacks (Django 5.2 reworded them; the
translations did not follow), named here so that `make messages` keeps our translations of them
in locale/zh_Hans (their JavaScript ones: locale/zh_Hans/LC_MESSAGES/djangojs.po). Our catalog
comes first (LOCALE_PATHS), so the console shows them in Chinese. Nothing imports this module."""

from django.utils.translation import gettext_noop

UPSTREAM = [
    gettext_noop("After you’ve created a user, you’ll be able to edit more user options."),
    gettext_noop("Error:"),
    # The home page's table headers, for screen readers.
    gettext_noop("Model name"),
    gettext_noop("Add link"),
    gettext_noop("Change or view list link"),
]
