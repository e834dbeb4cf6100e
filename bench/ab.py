"""A/B of settings on the intake: one database, one web server per setting, alternating rounds.

    .venv/bin/python bench/ab.py [--seconds 10] [--rounds 2] [--connections 16] [--batch 0]
                                 [SETTING ...]   # e.g. EVENT_GROUP_COMMIT=false EVENT_GROUP_COMMIT=true

Each SETTING is one or more comma-separated environment variables for the web server
(`WEB_THREADS=4,DATABASE_POOL_MAX_SIZE=4`). Every round starts a server per setting, as
bench/ingest.py does (uvicorn ×3 on notifycenter.asgi), warms it for 2 s and loads it with wrk;
rounds alternate the settings, so that this shared machine's drift falls on each alike. Each row:
events/s, latency, CPU per event of the web processes and of the whole machine (from /proc), and
how many transactions wrote them (events sharing a receipt time were written together: the mean
group of group commit, or the batch size).

--batch N posts batches of N events to /api/v1/events/batch instead of single events; --bare
posts to the bare view (bench/bare_urls.py, the peer of bench/ingest.py) instead: what the web
server and Django cost per request under each setting, with no intake in it.
--inbox PATH gets an inbox path instead (`/api/v1/inbox/messages`, `/api/v1/inbox/unread-count`),
as a patient holding 50 messages, with an inbox token: the apps' reads, a row per request.
--drop-foreign-keys (an experiment, not a setting) drops the foreign keys of the tables intake
writes before the runs, to price their checks (--drop-foreign-keys-to REGEX: only those to the
tables matching it); --drop-indexes REGEX likewise their non-unique
indexes whose names match.

Needs what bench/ingest.py needs (PostgreSQL, Redis, wrk); it creates and drops its own database.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jwt
import psycopg

# bench/ingest.py, beside this script
from ingest import PAID, ROOT, bare_table, bench_database, start_web, wait_http, wrk
from procstat import machine_cpu, tree_cpu
from table import print_table

INTAKE_TABLES = ("scenarios_event", "scenarios_message", "channels_delivery", "channels_deliverystatuschange")


def written(db: str) -> tuple[int, int]:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT received_at) FROM scenarios_event").fetchone()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", default=["EVENT_GROUP_COMMIT=false", "EVENT_GROUP_COMMIT=true"])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--web-workers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0, help="events per batch (0: single events)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--drop-foreign-keys", action="store_true", help="drop the intake tables' foreign keys")
    ap.add_argument(
        "--drop-foreign-keys-to", metavar="REGEX", help="drop only their foreign keys to tables matching REGEX"
    )
    ap.add_argument("--drop-indexes", metavar="REGEX", help="drop the intake tables' non-unique indexes matching REGEX")
    ap.add_argument("--bare", action="store_true", help="the bare view (bench/bare_urls.py) instead of the events")
    ap.add_argument(
        "--inbox", metavar="PATH", help="GET an inbox path (/api/v1/inbox/messages) as a patient with 50 messages"
    )
    args = ap.parse_args()
    args.server, args.web_threads = "uvicorn", 0

    db, env, key = bench_database()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE notifycenter_apikey SET rate_limit_per_minute = 0")  # as bench/ingest.py
        if args.bare:
            bare_table(conn)
        if args.drop_foreign_keys or args.drop_foreign_keys_to:
            for table, name in conn.execute(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s) AND confrelid::regclass::text ~ %s",
                [list(INTAKE_TABLES), args.drop_foreign_keys_to or "."],
            ).fetchall():
                conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                print(f"dropped {table}.{name}", flush=True)
        if args.drop_indexes:
            for (name,) in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index "
                "WHERE NOT indisunique AND indrelid::regclass::text = ANY(%s) AND indexrelid::regclass::text ~ %s",
                [list(INTAKE_TABLES), args.drop_indexes],
            ).fetchall():
                conn.execute(f'DROP INDEX "{name}"')
                print(f"dropped index {name}", flush=True)
    per_request = max(1, args.batch)
    method = "POST"
    if args.inbox:
        inbox_seed(env)  # signed below with bench_database's INBOX_JWT_SECRET
        path, body, method = args.inbox, "", "GET"
    elif args.bare:
        path, body = "/api/bare", json.dumps(PAID, ensure_ascii=False)
        env = {**env, "DJANGO_SETTINGS_MODULE": "bare_settings", "PYTHONPATH": str(Path(__file__).parent)}
    elif args.batch:
        path = "/api/v1/events/batch"
        body = json.dumps([{**PAID, "idempotency_key": f"KEY-{i}"} for i in range(args.batch)], ensure_ascii=False)
    else:
        path, body = "/api/v1/events", json.dumps(PAID, ensure_ascii=False)
    auth, url = f"Api-Key {key}", f"http://127.0.0.1:{args.port}"
    if args.inbox:
        claims = {"sub": "p-bench", "role": "patient", "aud": "notifycenter", "exp": int(time.time()) + 86400}
        auth = "Bearer " + jwt.encode(claims, env["INBOX_JWT_SECRET"], algorithm="HS256")

    rows = []
    for round_no in range(1, args.rounds + 1):
        for setting in args.settings:
            extra = dict(kv.split("=", 1) for kv in setting.split(","))
            web = start_web(args.port, args, {**env, **extra})
            try:
                wait_http(f"{url}/healthz")
                wrk(url, path, body, auth, 2, args.connections, method)  # warm up
                events0, groups0 = written(db)
                web0, machine0 = tree_cpu(web.pid), machine_cpu()
                r = wrk(url, path, body, auth, args.seconds, args.connections, method)
                web1, machine1 = tree_cpu(web.pid), machine_cpu()
                events1, groups1 = written(db)
                if args.bare or args.inbox:
                    events0, groups0, events1, groups1 = 0, 0, r["requests"], r["requests"]
            finally:
                web.send_signal(signal.SIGTERM)
                web.wait(30)
            events = events1 - events0
            rows.append(
                (
                    str(round_no),
                    setting,
                    f"{(r['requests'] - r['non2xx']) * per_request / r['seconds']:,.0f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{(web1 - web0) / max(1, events) * 1000:.2f}",
                    f"{(machine1 - machine0) / max(1, events) * 1000:.2f}",
                    f"{events / max(1, groups1 - groups0):.2f}",
                    f"{r['non2xx']} / {r['errors']}",
                )
            )
            print(" | ".join(rows[-1]), flush=True)
    print()
    print_table(
        (
            "round",
            "setting",
            "events/s",
            "p50 ms",
            "p99 ms",
            "web CPU ms/event",
            "machine CPU ms/event",
            "events per transaction",
            "non-2xx / errors",
        ),
        rows,
    )
    kind = f"batches of {args.batch}" if args.batch else "single events"
    kind = f"GET {args.inbox} (a row is a request)" if args.inbox else "the bare view" if args.bare else kind
    print(
        f"\n{kind}; {os.cpu_count()} cores; uvicorn ×{args.web_workers}; wrk {args.connections} connections, "
        f"{args.seconds} s per run; load average {os.getloadavg()[0]:.1f}"
    )


def inbox_seed(env: dict) -> None:
    """50 unread inbox messages for the patient the --inbox requests read as."""
    code = (
        "from inbox.services import inbox_message_put as put\n"
        "for i in range(50):\n"
        "    put(audience='patient', recipient_id='p-bench', title=f'消息{i}', body='您的问诊已接诊，请及时查看。',"
        " category='consultation', link={'target': 'inquiry', 'route': 'inquiry_detail', 'params': {'id': i}},"
        " source_key=f'bench:{i}')\n"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], env=env, cwd=ROOT, check=True)


if __name__ == "__main__":
    sys.exit(main())
