"""docs/runbook.md, "PostgreSQL is down", tried for real: PostgreSQL cuts every connection
(`pg_terminate_backend`, as a restart or a failover does) and is back at once.

- The fake provider server (`manage.py fakeproviders --receipts-to`, started by `make run`) reads
  the sandbox accounts every two seconds: a cut connection ended the whole server (and `make run`
  stops everything when one of its processes exits). It now skips that push and connects afresh.
- A web process with a connection pool (DATABASE_POOL_MAX_SIZE, as README and deploy/ run it)
  handed out the pooled connection the server had cut: with PostgreSQL up, the next request on it
  answered 503 `database_unavailable`, and /readyz said the database was down, once per cut
  connection in the pool (up to 8 a process). The runbook's "connections come back by
  themselves" asks the pool to check a connection before handing it out.
"""

import io
import os
import subprocess
import sys

import psycopg
import pytest
from django.db import connection

from channels.fakeproviders import State
from channels.management.commands.fakeproviders import Command as FakeProvidersCommand
from tests.test_e2e_worker import ROOT, _database_url

pytestmark = pytest.mark.django_db(transaction=True)


def _cut(pid: int) -> None:
    """What a PostgreSQL restart does to a connection: the server ends it."""
    with psycopg.connect(_database_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_fake_provider_server_outlives_a_cut_database_connection():
    command = FakeProvidersCommand(stdout=io.StringIO(), stderr=io.StringIO())
    state = State()
    connection.ensure_connection()
    _cut(connection.connection.info.backend_pid)

    # The center is not listening on port 9 either: the push itself is never reached.
    command.push(state, "http://127.0.0.1:9")
    assert "receipts push skipped, the database is away" in command.stderr.getvalue()

    # The next push reads the accounts again, on a new connection.
    command.stderr = io.StringIO()
    command.push(state, "http://127.0.0.1:9")
    assert "database is away" not in command.stderr.getvalue()


# A web process's pool, as uvicorn runs it (through the WSGI handler, whose request signals give
# the connection back to the pool after each request; Django's test Client switches those off):
# the server cuts every pooled connection, and the next requests must find the database answering.
POOLED = """
import json
import django
django.setup()
import psycopg
from wsgiref.util import setup_testing_defaults
from notifycenter.handlers import wsgi_application

app = wsgi_application()

def readyz():
    environ = {"PATH_INFO": "/readyz", "REQUEST_METHOD": "GET", "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    seen = {}
    body = b"".join(app(environ, lambda status, headers: seen.setdefault("status", status)))
    return seen["status"].split()[0] + " " + json.loads(body)["checks"]["database"]["status"]

readyz()  # the pool opens
with psycopg.connect(ADMIN_URL, autocommit=True, application_name="probe-admin") as admin:
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pooled-probe'")
print(*(readyz() for _ in range(3)), sep=", ")
"""


def test_a_pooled_connection_the_server_cut_is_not_handed_to_the_next_request():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test",
        "DATABASE_URL": _database_url(),
        "DATABASE_POOL_MAX_SIZE": "2",
        "PGAPPNAME": "pooled-probe",  # libpq's: the probe's connections, and only they, are cut
    }
    probe = POOLED.replace("ADMIN_URL", repr(_database_url()))
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Before the fix: "503 down, 503 down, 200 ok", one 503 per cut connection in the pool.
    assert done.stdout.strip().splitlines()[-1] == "200 ok, 200 ok, 200 ok"
