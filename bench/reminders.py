"""Reminders benchmark: how late reminders fire with a million pending, next to the common
alternative of one django-celery-beat PeriodicTask (ClockedSchedule, one-off) per reminder.

    .venv/bin/python bench/reminders.py [--pending 1000000] [--due 10000]

Ours: --pending scheduled reminders (COPY), of which --due fall due within one minute; one
Celery worker with embedded beat, whose one-second scan claims due reminders with
SELECT ... FOR UPDATE SKIP LOCKED. Peer: the same --due reminders only, each its own one-off
clocked PeriodicTask read by django-celery-beat's DatabaseScheduler, calling a task that fires
that one reminder. Both measured the same way: lateness = when the patient's inbox row was
written minus when the reminder was due; CPU = user+system seconds of the worker's process tree
(beat included) over the run. Needs PostgreSQL and Redis (defaults as `make test`).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from procstat import tree_cpu  # bench/procstat.py, beside this script
from table import print_table  # bench/table.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CELERY = str(Path(PY).parent / "celery")
base_db = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
DB = urlunparse(urlparse(base_db)._replace(path=urlparse(base_db).path + "_reminders_bench"))
ENV = {
    **os.environ,
    "DATABASE_URL": DB,
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"),
    "CELERY_QUEUE": "reminders-bench",
    "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
    "DJANGO_SECRET_KEY": "bench-only",
    "INBOX_JWT_SECRET": "bench-only-secret-of-sufficient-length-for-hs256",
    "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
    "LOG_LEVEL": "WARNING",
}
HEAD_START = 45  # seconds from setup to the first due reminder: the worker and beat start meanwhile


def sh(*args, env=None):
    return subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env or ENV, check=True, capture_output=True, text=True
    )


def reset():
    admin = urlunparse(urlparse(DB)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        name = urlparse(DB).path.lstrip("/")
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    sh("migrate", "-v0")
    subprocess.run(
        [PY, "-c", "import os,redis;redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"], env=ENV, check=True
    )


SETUP_SQL = """
INSERT INTO scenarios_scenario (code, name, domain, description, enabled, subject_type, data_schema, sample_data,
  backend_call, effect, created_at, updated_at)
VALUES ('bench.reminder', '提醒', 'plan', '', true, 'plan', '{}', '{}', '', '', now(), now()) RETURNING id;
"""


def setup(pending: int, due: int) -> tuple[datetime, list[int]]:
    """One event, rule, template (inbox) and 1,000 people; `pending` scheduled reminders, `due`
    of them in the minute after HEAD_START. Returns (first due time, the due messages' ids)."""
    with psycopg.connect(DB) as conn:
        scenario = conn.execute(SETUP_SQL).fetchone()[0]
        template = conn.execute(
            "INSERT INTO scenarios_template (code, name, audience, category, title, body, is_verification_code,"
            " buttons, critical, created_at, updated_at) VALUES ('pt_plan_bench', '随访提醒', 'patient', 'system',"
            " '随访提醒', '请按时完成今天的随访。', false, '[]', false, now(), now()) RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO scenarios_channelbinding (template_id, channel, enabled, external_template_id, params,"
            " options) VALUES (%s, 'inbox', true, '', '{}', '{}')",
            (template,),
        )
        rule = conn.execute(
            "INSERT INTO scenarios_rule (scenario_id, code, audience, template_id, enabled, condition,"
            " default_recipients, anchor_field, offset_minutes, grace_minutes, cancel_on, reschedule_on,"
            " importance, quiet_hours, cap_window_minutes, dedup_field, dedup_window_minutes, fallback_chain)"
            " VALUES (%s, 'r', 'patient', %s, true, '{}', '[]', 'at', 0, 0, '[]', '[]',"
            " 'transactional', 'hold', 10, '', 10, '[]') RETURNING id",
            (scenario, template),
        ).fetchone()[0]
        event = conn.execute(
            "INSERT INTO scenarios_event (scenario_id, client, idempotency_key, request_hash, subject_type,"
            " subject_id, data, recipients, occurred_at, answer, received_at)"
            " VALUES (%s, 'bench', 'k', '', 'plan', '1', '{}', '{}', now(), '{}', now()) RETURNING id",
            (scenario,),
        ).fetchone()[0]
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY channels_recipient (audience, external_id, name, phone,"
                " wechat_mini_openid, wechat_oa_openid, wechat_unionid,"
                " push_registration_ids, wecom_userid, locale, created_at,"
                " updated_at, phone_hash, wechat_mini_openid_hash, wechat_oa_openid_hash, wechat_unionid_hash,"
                " wecom_userid_hash) FROM STDIN"
            ) as copy,
        ):
            for i in range(1000):
                copy.write(f"patient\tp-{i}\t\t\t\t\t\t[]\t\tzh-hans\t2026-01-01\t2026-01-01\t\t\t\t\t\n")
        people = [r[0] for r in conn.execute("SELECT id FROM channels_recipient ORDER BY id")]
        copy_sql = (
            "COPY scenarios_message (event_id, rule_id, template_id, recipient_id, audience, subject_type,"
            " subject_id, status, status_reason, due_at, rendered, data_overrides, created_at, chain_pending,"
            " dedup_key) FROM STDIN"
        )

        def line(i, at):
            return (
                f"{event}\t{rule}\t{template}\t{people[i % 1000]}\tpatient\tplan\t{i}\tscheduled\t\t"
                f"{at.isoformat()}\t{{}}\t{{}}\t{datetime.now(UTC).isoformat()}\tf\t\n"
            )

        # The pending mass first, spread over the 30 days after tomorrow …
        later = pending - due
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for i in range(later):
                copy.write(line(due + i, tomorrow + timedelta(seconds=30 * 86400 * i / max(1, later))))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE scenarios_message")
        # … then the measured minute, placed HEAD_START seconds after the load is done.
        start = datetime.now(UTC) + timedelta(seconds=HEAD_START)
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for i in range(due):
                copy.write(line(i, start + timedelta(seconds=60 * i / due)))
        ids = [r[0] for r in conn.execute("SELECT id FROM scenarios_message WHERE due_at < %s", (tomorrow,))]
    return start, ids


def run(label: str, start: datetime, ids: list[int], env: dict) -> tuple:
    schedule = str(Path(tempfile.mkdtemp(prefix="beat-")) / "schedule")
    worker = subprocess.Popen(
        [
            CELERY,
            "-A",
            "notifycenter",
            "worker",
            "-B",
            "-Q",
            env["CELERY_QUEUE"],
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--schedule",
            schedule,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cpu0 = tree_cpu(worker.pid)
    deadline = start + timedelta(seconds=60 + 180)
    joined = (
        " FROM scenarios_message m JOIN inbox_inboxmessage i ON i.source_key = 'm' || m.id || ':inbox'"
        " WHERE m.id = ANY(%s)"
    )
    sql = "SELECT extract(epoch FROM i.created_at - m.due_at)" + joined
    with psycopg.connect(DB, autocommit=True) as conn:
        while datetime.now(UTC) < deadline:
            time.sleep(2)
            if conn.execute("SELECT count(*)" + joined, (ids,)).fetchone()[0] >= len(ids):
                break
        cpu = tree_cpu(worker.pid) - cpu0
        late = sorted(float(r[0]) for r in conn.execute(sql, (ids,)))
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(30)
    missing = len(ids) - len(late)
    if not late:
        return (label, "—", "—", "—", f"{cpu:.1f}", f"{missing:,} never fired")
    return (
        label,
        f"{statistics.median(late):.2f}",
        f"{late[min(len(late) - 1, int(len(late) * 0.99))]:.2f}",
        f"{late[-1]:.2f}",
        f"{cpu:.1f}",
        f"{missing:,} never fired" if missing else "all fired",
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pending", type=int, default=1_000_000)
    ap.add_argument("--due", type=int, default=10_000)
    args = ap.parse_args()

    print(f"ours: {args.pending:,} pending, {args.due:,} due within a minute …", flush=True)
    reset()
    start, ids = setup(args.pending, args.due)
    ours = run(f"ours: one-second scan, {args.pending:,} pending", start, ids, ENV)

    print(f"peer: {args.due:,} clocked one-off PeriodicTasks …", flush=True)
    reset()
    start, ids = setup(args.due, args.due)
    with psycopg.connect(DB) as conn, conn.cursor() as cur:
        clocks = []
        for mid, due_at in conn.execute("SELECT id, due_at FROM scenarios_message ORDER BY id").fetchall():
            clock = cur.execute(
                "INSERT INTO django_celery_beat_clockedschedule (clocked_time) VALUES (%s) RETURNING id", (due_at,)
            ).fetchone()[0]
            clocks.append((f"reminder-{mid}", "scenarios.tasks.fire_message", json.dumps([mid]), clock))
        cur.executemany(
            "INSERT INTO django_celery_beat_periodictask (name, task, args, kwargs, clocked_id, one_off, enabled,"
            " total_run_count, date_changed, description, headers, priority, expire_seconds) VALUES"
            " (%s, %s, %s, '{}', %s, true, true, 0, now(), '', '{}', NULL, NULL)",
            clocks,
        )
        cur.execute(
            "INSERT INTO django_celery_beat_periodictasks (ident, last_update) VALUES (1, now())"
            " ON CONFLICT (ident) DO UPDATE SET last_update = now()"
        )
        conn.commit()
    peer = run(
        f"peer: a PeriodicTask per reminder, {args.due:,} rows", start, ids, {**ENV, "NOTIFYCENTER_BEAT_SCANS": "0"}
    )

    head = ("run", "lateness p50 s", "p99 s", "max s", "worker CPU s", "fired")
    rows = [ours, peer]
    print_table(head, rows)
    print(
        f"\n{args.due:,} reminders due within one minute; lateness = inbox row written − due time; "
        f"{os.cpu_count()} cores; targets: ours p99 ≤ 2 s, ≥ 10× better than the peer"
    )


if __name__ == "__main__":
    main()
