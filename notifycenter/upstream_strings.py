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
    # django-import-export 4.4's export page, which its zh_Hans catalog lacks.
    gettext_noop("Select all"),
    # django-simple-history 3.x's history page: the column its zh_Hans catalog lacks.
    gettext_noop("Changes"),
    # django-celery-beat 2.9's, which its zh_Hans catalog lacks, gets wrong (the day of the month's
    # example) or contradicts (its default time zone is CELERY_TIMEZONE, Asia/Shanghai here).
    gettext_noop("Schedule"),
    gettext_noop("Arguments"),
    gettext_noop("Execution Options"),
    gettext_noop("Periodic Tasks Using This Schedule"),
    gettext_noop('Cron Days Of The Month to Run. Use "*" for "all". (Example: "1,15")'),
    gettext_noop('Cron Months (1-12) Of The Year to Run. Use "*" for "all". (Example: "1,12")'),
    gettext_noop('Cron Days Of The Week to Run. Use "*" for "all", Sunday is 0 or 7, Monday is 1. (Example: "0,5")'),
    gettext_noop("Timezone to Run the Cron Schedule on. Default is UTC."),
]
