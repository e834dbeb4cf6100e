"""PostgreSQL connection settings (notifycenter/settings.py): DATABASE_PREPARE_THRESHOLD=N makes
psycopg prepare a statement once a connection has run it N times. Django passes psycopg
`prepare_threshold=None` (never) unless told, so "prepared" is checked on the server itself, in a
process of its own on the test database."""

import os
import subprocess
import sys

import pytest

from tests.test_e2e_worker import ROOT, _database_url

pytestmark = pytest.mark.django_db(transaction=True)

# Runs one statement six times, then asks the server which of this connection's are prepared.
PROBE = """
import django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    for n in range(6):
        cursor.execute("SELECT %s::int + 17", [n])
    cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 17'")
    print(settings.DATABASES["default"]["OPTIONS"].get("prepare_threshold"), cursor.fetchone()[0])
"""


def _probe(value: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test", "DATABASE_URL": _database_url()}
    env.pop("DATABASE_PREPARE_THRESHOLD", None)
    if value is not None:
        env["DATABASE_PREPARE_THRESHOLD"] = value
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("value", "seen"), [("5", "5 1"), ("1", "1 1"), ("off", "None 0"), (None, "None 0")])
def test_a_statement_is_prepared_on_the_server_once_run_the_threshold_times(value, seen):
    done = _probe(value)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == seen


def test_anything_else_is_refused_at_start_with_a_clear_error():
    done = _probe("five")
    assert done.returncode != 0
    assert "DATABASE_PREPARE_THRESHOLD: a count of runs or `off`, not 'five'" in done.stderr
