"""Test settings: real PostgreSQL and Redis from DATABASE_URL / REDIS_URL (scripts/test.sh sets them)."""

import os
import tempfile
from pathlib import Path

# Throwaway values for tests only; real deployments take these from the environment.
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("INBOX_JWT_SECRET", "test-only-jwt-secret-of-enough-length-for-hs256")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWtleS0zMi1ieXRlcy1sb25nLTAwMDA=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("NOTIFYCENTER_DATA_DIR", str(Path(tempfile.gettempdir()) / "notifycenter-test-data"))

from .settings import *  # noqa: F403

# Tests render admin pages without a `collectstatic` first: plain names, no manifest to look up.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_AUTOREFRESH = True  # static files found per request (no collectstatic before tests)
WHITENOISE_USE_FINDERS = True
# The tests' in-process servers import notifycenter.asgi inside a test, on the test's own connection;
# tests/test_warmup.py runs the warm-up in a process of its own.
WEB_WARM_UP = env.bool("WEB_WARM_UP", default=False)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Unit tests run tasks in process; the end-to-end tests switch this off and use a real worker.
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1") == "1"
# The webhook tests' receivers listen on 127.0.0.1 (tests/test_security_review.py turns it off).
WEBHOOK_ALLOW_INTERNAL_URLS = True
