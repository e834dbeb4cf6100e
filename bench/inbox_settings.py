"""bench/inbox.py's settings: the project's, plus the peer app it is measured against."""

from notifycenter.settings import *  # noqa: F403
from notifycenter.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "notifications"]
