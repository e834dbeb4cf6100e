"""The operations console at scale: each page's server time with the tables small and large.

    .venv/bin/python bench/console.py [--deliveries 10000000] [--reuse] [--repeat 3]

Operations staff open the console's home page, the delivery list and the coverage matrix many
times a day; the tables behind them grow by every delivery and keep it for EVENT_RETENTION_DAYS
(180). What a page costs when they are large, next to the same page with the tables small, in the
same run: a page that reads every row gets slower with the table, one that reads what it shows
does not.

Two databases, built alike (`<name>_console_small`, `<name>_console`; --reuse keeps the large one
between runs, its build takes minutes): the catalog, then every scenario's sample event for
people p-1…, d-1…, ph-1… through the API (Celery eager, no channel accounts: inbox messages
sent, external channels failed `no_account` or skipped `no_address`), then that set copied by SQL
with new ids and keys, each copy older than the last, spread over 30 days (a thirtieth of it in
the last 24 hours). Each page is fetched through Django's test client as a superuser, in the
console's language: one warm-up, then --repeat times; the table gives the median and the worst,
the queries, and the slowest statement.

Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL as `make test`).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg
from ingest import db_url_for, reset_database  # bench/ingest.py, beside this script
from table import print_table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def run(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{cmd[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


SEED = """
import django
django.setup()
from django.test import Client
from notifycenter.models import ApiKey
from scenarios.models import Scenario

_, key = ApiKey.generate(client="his", name="console-bench", scopes=["events"])
client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
people = int(__import__("os").environ["SEED_PEOPLE"])
for scenario in Scenario.objects.exclude(code="point.withdrawal_requested"):  # codes: POST /api/v1/otp
    for n in range(1, people + 1):
        body = {
            "event": scenario.code,
            "idempotency_key": f"seed-{scenario.code}-{n}",
            "data": scenario.sample_data,
            "recipients": {"patient": [f"p-{n}"], "doctor": [f"d-{n}"], "pharmacist": [f"ph-{n}"]},
        }
        answer = client.post("/api/v1/events", body, content_type="application/json")
        assert answer.status_code in (202, 409, 422), (scenario.code, answer.status_code, answer.content[:300])
"""

# Copied tables, in the order their references need; per table: columns given a new key, columns
# pointing at another copied table's rows, and unique text columns given a suffix.
COPIED = [
    ("scenarios_event", {"id": "scenarios_event"}, {}, ["idempotency_key"]),
    (
        "scenarios_message",
        {"id": "scenarios_message"},
        {"event_id": "scenarios_event"},
        [],
    ),
    (
        "channels_delivery",
        {"id": "channels_delivery"},
        {"event_ref": "scenarios_event", "message_ref": "scenarios_message"},
        ["idempotency_key"],
    ),
    (
        "channels_deliverystatuschange",
        {"id": "channels_deliverystatuschange"},
        {"delivery_id": "channels_delivery"},
        [],
    ),
    ("inbox_inboxmessage", {"id": "inbox_inboxmessage"}, {}, ["source_key"]),
]

PAGES = [
    ("home (运营首页)", "/admin/"),
    ("deliveries", "/admin/channels/delivery/"),
    ("deliveries, failed", "/admin/channels/delivery/?status__exact=failed"),
    ("deliveries, SMS skipped", "/admin/channels/delivery/?channel__exact=sms&status__exact=skipped"),
    ("deliveries, search by id", "/admin/channels/delivery/?q={delivery}"),
    ("a delivery", "/admin/channels/delivery/{delivery}/change/"),
    ("events", "/admin/scenarios/event/"),
    ("an event", "/admin/scenarios/event/{event}/change/"),
    ("messages", "/admin/scenarios/message/"),
    ("coverage matrix", "/admin/scenarios/scenario/coverage/"),
    ("inbox messages", "/admin/inbox/inboxmessage/"),
]

TIMER = """
import django, json, os, statistics, time
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext

# Static files' names as they are (no collectstatic into the bench's data folder): the pages' cost.
plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
settings.STORAGES = {**settings.STORAGES, "staticfiles": plain}
user, _ = get_user_model().objects.get_or_create(username="console-bench", defaults={"is_staff": True})
user.is_staff = user.is_superuser = True
user.save()
client = Client()
client.force_login(user)
out = []
for label, path in json.loads(os.environ["PAGES"]):
    client.get(path)  # warm-up: the process's first page, the database's pages
    took, queries = [], None
    for _ in range(int(os.environ["REPEAT"])):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            answer = client.get(path)
            took.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
        queries = ctx.captured_queries
    slowest = max(queries, key=lambda q: float(q["time"]))
    slow_ms = float(slowest["time"]) * 1000
    out.append([label, statistics.median(took), max(took), len(queries), slow_ms, slowest["sql"][:90]])
print(json.dumps(out))
"""


def environment(db: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": db,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CELERY_QUEUE": "console-bench",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "DJANGO_SECRET_KEY": "bench-only",
        "INBOX_JWT_SECRET": "bench-only-secret-of-sufficient-length-for-hs256",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
        "NOTIFYCENTER_DATA_DIR": tempfile.mkdtemp(prefix="nc-console-"),
        "LOG_LEVEL": "ERROR",
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "PYTHONPATH": str(ROOT),
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }


def build(db: str, deliveries: int, people: int) -> None:
    """The catalog and the seed set through the API, then copies of it up to `deliveries`."""
    env = environment(db)
    reset_database(db)
    run([PY, "manage.py", "migrate", "-v0"], env)
    run([PY, "manage.py", "loaddata", "catalog", "-v0"], env)
    run([PY, "-c", SEED], {**env, "SEED_PEOPLE": str(people)})
    with psycopg.connect(db, autocommit=True) as conn:
        seeded = conn.execute("SELECT count(*) FROM channels_delivery").fetchone()[0]
        copies = max(0, deliveries // max(seeded, 1) - 1)
        print(f"  {urlparse(db).path[1:]}: {seeded} seeded deliveries, {copies} copies", flush=True)
        if copies:
            copy(conn, copies)
        conn.execute("VACUUM ANALYZE")


def copy(conn, copies: int) -> None:
    strides = {t: conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {t}").fetchone()[0] for t, *_ in COPIED}
    step = 30 * 86400 / copies  # seconds between copies: 30 days in all
    for table, keys, refs, unique in COPIED:
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
        select = []
        for name, kind in columns:
            if name in keys:
                select.append(f"{name} + g * {strides[keys[name]]}")
            elif name in refs:
                select.append(f"{name} + g * {strides[refs[name]]}")
            elif name in unique:
                select.append(f"{name} || '~' || g")
            elif kind == "timestamp with time zone":
                select.append(f"{name} - make_interval(secs => g * {step})")
            else:
                select.append(name)
        names = ", ".join(n for n, _ in columns)
        t0 = time.perf_counter()
        for start in range(1, copies + 1, 200):
            stop = min(copies, start + 199)
            conn.execute(
                f"INSERT INTO {table} ({names}) SELECT {', '.join(select)} FROM {table} t, "
                f"generate_series({start}, {stop}) g WHERE t.id < {strides[table]}"
            )
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        print(f"    {table}: {n:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)


def pages(db: str, repeat: int) -> list[list]:
    with psycopg.connect(db) as conn:
        delivery = conn.execute("SELECT max(id) FROM channels_delivery").fetchone()[0]
        event = conn.execute("SELECT max(id) FROM scenarios_event").fetchone()[0]
    paths = [(label, path.format(delivery=delivery, event=event)) for label, path in PAGES]
    env = {**environment(db), "PAGES": json.dumps(paths), "REPEAT": str(repeat)}
    return json.loads(run([PY, "-c", TIMER], env).strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, default=10_000_000)
    ap.add_argument("--small", type=int, default=10_000, help="deliveries in the small database")
    ap.add_argument("--people", type=int, default=20, help="people per scenario in the seed set")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="keep the large database if it is there")
    ap.add_argument("--keep", action="store_true", help="do not drop the databases at the end")
    args = ap.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    name = urlparse(base).path.lstrip("/")
    small, large = db_url_for(base, f"{name}_console_small"), db_url_for(base, f"{name}_console")
    print(f"{os.cpu_count()} cores; building the databases", flush=True)
    build(small, args.small, args.people)
    try:
        with psycopg.connect(large) as conn:
            held = conn.execute("SELECT count(*) FROM channels_delivery").fetchone()[0] if args.reuse else 0
    except psycopg.OperationalError:
        held = 0
    if held:
        print(f"  reusing {urlparse(large).path[1:]}: {held:,} deliveries (migrated to this code)", flush=True)
        run([PY, "manage.py", "migrate", "-v0"], environment(large))
    else:
        build(large, args.deliveries, args.people)
    with psycopg.connect(large) as conn:
        held = conn.execute("SELECT count(*) FROM channels_delivery").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM scenarios_event").fetchone()[0]

    # Alternating, small first: the machine's drift falls on both alike.
    measured = {}
    for db in (small, large, small, large):
        for row in pages(db, args.repeat):
            measured.setdefault((db, row[0]), []).append(row)
    rows = []
    for label, _ in PAGES:
        a, b = measured[(small, label)], measured[(large, label)]
        median_a = sorted(r[1] for r in a)[len(a) // 2]
        median_b = sorted(r[1] for r in b)[len(b) // 2]
        worst = max(b, key=lambda r: r[2])
        rows.append(
            (
                label,
                f"{median_a:.0f}",
                f"{median_b:.0f} / {worst[2]:.0f}",
                f"{median_b / median_a:.1f}×",
                worst[3],
                f"{worst[4]:.0f}: {worst[5]}",
            )
        )
    print_table(
        (
            "page",
            f"{args.small:,} deliveries: ms",
            f"{held:,} deliveries ({events:,} events): median / worst ms",
            "large ÷ small",
            "queries",
            "slowest statement (large): ms",
        ),
        rows,
    )
    if not args.keep:
        for db in (small, large) if not args.reuse else (small,):
            with psycopg.connect(db_url_for(base, "postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{urlparse(db).path[1:]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
