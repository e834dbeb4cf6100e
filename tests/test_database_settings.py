"""PostgreSQL connection settings (notifycenter/settings.py): parameters bound on the server, and
a statement prepared once a connection has run it DATABASE_PREPARE_THRESHOLD times. Django passes
psycopg `prepare_threshold=None` unless told, so "prepared" must be seen on the server."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_a_statement_run_often_is_prepared_on_the_server():
    statement = "SELECT %s::int + 17"
    with connection.cursor() as cursor:
        for n in range(6):
            cursor.execute(statement, [n])
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s", [statement.replace("%s", "$1")]
        )
        assert cursor.fetchone()[0] == 1


def _prepare_option(value: str) -> subprocess.CompletedProcess:
    probe = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS'].get('prepare_threshold'))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test", "DATABASE_PREPARE_THRESHOLD": value}
    return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("value", "option"), [("5", "5"), ("1", "1"), ("off", "None")])
def test_the_threshold_is_a_count_of_runs_or_off(value, option):
    done = _prepare_option(value)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == option


def test_anything_else_is_refused_at_start_with_a_clear_error():
    done = _prepare_option("five")
    assert done.returncode != 0
    assert "DATABASE_PREPARE_THRESHOLD: a count of runs or `off`, not 'five'" in done.stderr
