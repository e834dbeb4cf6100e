"""The Celery application. Tasks live in each app's tasks.py and stay thin: they call a service."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")

app = Celery("notifycenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
