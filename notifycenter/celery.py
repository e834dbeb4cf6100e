"""The Celery application. Tasks live in each app's tasks.py and stay thin: they call a service."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

from . import broker  # noqa: F401  (registers the embedded broker, ncfs://)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")

app = Celery("notifycenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs):
    """Drop connections past CONN_MAX_AGE or broken, as Django does around each request."""
    from django.db import close_old_connections

    close_old_connections()
