"""With LOG_FORMAT=json, uvicorn's own lines (start, stop, each live connection) come out as JSON
like the rest: uvicorn sets plain handlers of its own before Django configures logging."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_uvicorns_lines_are_json_under_log_format_json(tmp_path):
    code = (
        "import logging, logging.config, uvicorn.config;"
        "logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG);"  # what uvicorn does at start
        "import django; django.setup();"
        "logging.getLogger('uvicorn.error').info('Started server process [1]')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "DJANGO_SECRET_KEY": "x",
        "LOG_FORMAT": "json",
        "NOTIFYCENTER_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    lines = [line for line in (done.stdout + done.stderr).splitlines() if "Started server process" in line]
    assert len(lines) == 1, done.stdout + done.stderr
    assert json.loads(lines[0])["logger"] == "uvicorn.error"


def test_an_access_line_masks_query_values_that_could_name_someone_or_open_something(tmp_path):
    """With uvicorn's access log on (no --no-access-log), a receipt callback's token and an admin
    search by openid stayed in the log; the parameters that name no one stay readable."""
    code = (
        "import logging, logging.config, uvicorn.config;"
        "logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG);"  # access log on, as uvicorn's default
        "import django; django.setup();"
        "logging.getLogger('uvicorn.access').info('%s - \"%s %s HTTP/%s\" %d', '127.0.0.1:5000', 'GET',"
        " '/api/v1/callbacks/aliyun/sms?token=sandbox-callback-token&platform=h5', '1.1', 200);"
        "logging.getLogger('uvicorn.access').info('%s - \"%s %s HTTP/%s\" %d', '127.0.0.1:5000', 'GET',"
        " '/admin/channels/recipient/?q=oOA-p43-openid', '1.1', 200)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "notifycenter.settings", "DJANGO_SECRET_KEY": "x"}
    env.update(NOTIFYCENTER_DATA_DIR=str(tmp_path), LOG_FORMAT="plain")
    done = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    out = done.stdout + done.stderr

    assert "/api/v1/callbacks/aliyun/sms?token=***&platform=h5" in out, out
    assert "/admin/channels/recipient/?q=***" in out, out
    assert "sandbox-callback-token" not in out and "oOA-p43-openid" not in out
