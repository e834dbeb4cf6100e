"""One line per log record, also with DEBUG on (`make run`): Django's own console handler used to
write each request warning a second time, bare, beside the root's formatted line."""

import logging
import os
import subprocess
import sys

from django.conf import settings

SCRIPT = """
import os, django
os.environ["DJANGO_DEBUG"] = "1"
django.setup()
from django.test import Client
from django.conf import settings
settings.ALLOWED_HOSTS = ["testserver"]
Client().get("/no-such-page")
Client().get("/favicon.ico")
"""


def test_a_request_warning_is_one_line_with_debug_on():
    env = {"DJANGO_SETTINGS_MODULE": "notifycenter.settings", "DJANGO_SECRET_KEY": "x", "LOG_LEVEL": "INFO"}
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stderr.splitlines() if "Not Found" in line]
    assert len(lines) == 1 and "WARNING django.request Not Found: /no-such-page" in lines[0], done.stderr[-2000:]


def test_django_s_logger_has_no_handler_of_its_own():
    assert logging.getLogger("django").handlers == []
