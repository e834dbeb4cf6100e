"""`make run`'s stack under load: the embedded default (SQLite, kombu's filesystem broker) next to
the same stack on PostgreSQL + Redis, measured the same way in the same run.

    .venv/bin/python bench/embedded.py [--port 8100 --fake-port 8181]

Each mode starts scripts/run.sh exactly as `make run` does (uvicorn with 2 processes, one Celery
worker with embedded beat, the fake providers) on a fresh data folder and database, then:

1. 50 concurrent clients, each POSTing 4 events on a new connection: connection errors (resets,
   refusals) and non-2xx answers, and the answer time;
2. a burst of 100 events (20 clients): time from the last POST's answer until all 100 patient
   inbox rows are visible;
3. 30 single events one after another: POST sent → the patient's inbox row visible (polled every
   10 ms);
4. 40 reminders due over 10 s (`inquiry.appointment_booked`, the doctor's reminder 5 min before
   the appointment): inbox row written minus due time.

Targets (issue 13): 0 connection errors; burst in the inbox ≤ 3 s after the last POST; single
event p50 ≤ 300 ms; reminders p99 lateness ≤ 2 s. Needs PostgreSQL and Redis for the peer
(`DATABASE_URL`, `REDIS_URL` as `make test`; the peer uses a database of its own, dropped first).
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from table import print_table  # bench/table.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project, for the ORM reads
PY = sys.executable


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


# ---------------------------------------------------------------- the child: one mode, measured


class Stack:
    """scripts/run.sh on a fresh data folder; the ORM of this process reads the same database."""

    def __init__(self, mode: str, port: int, fake_port: int):
        self.mode, self.port, self.fake_port = mode, port, fake_port
        self.data = Path(tempfile.mkdtemp(prefix=f"nc-embedded-{mode}-"))
        os.environ["NOTIFYCENTER_DATA_DIR"] = str(self.data)
        os.environ["DJANGO_SETTINGS_MODULE"] = "notifycenter.settings"
        os.environ["LOG_LEVEL"] = "WARNING"
        os.environ["FAKE_PROVIDERS_URL"] = f"http://127.0.0.1:{fake_port}"
        subprocess.run([PY, "scripts/local_env.py"], cwd=ROOT, check=True, capture_output=True)
        for args in (["migrate", "-v0"], ["loaddata", "catalog", "-v0"], ["bootstrap_local"]):
            subprocess.run([PY, "manage.py", *args], cwd=ROOT, check=True, capture_output=True)
        self.key = (self.data / "dev-api-key").read_text().strip()
        for p in (port, fake_port):
            try:
                http.client.HTTPConnection("127.0.0.1", p, timeout=1).connect()
            except OSError:
                continue
            raise SystemExit(f"port {p} is in use: stop what listens there first")
        env = {**os.environ, "PY": PY, "PORT": str(port), "FAKE_PROVIDERS_PORT": str(fake_port)}
        self.log = open(self.data / "run.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["scripts/run.sh"], cwd=ROOT, env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        try:
            self._wait_until_up()
            import django

            django.setup()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self):
        for _ in range(600):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    time.sleep(3)  # the worker and beat start beside the web server
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.mode}: the stack did not come up; see {self.data / 'run.log'}")

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def post(self, body: dict) -> tuple[int, float]:
        """One event on a new connection: (status, seconds)."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/api/v1/events",
                json.dumps(body),
                {"Authorization": f"Api-Key {self.key}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            return response.status, time.perf_counter() - started
        finally:
            conn.close()


def accepted(run: str, i: int) -> dict:
    """inquiry.accepted to one patient: one inbox row (the OA template is skipped, no openid)."""
    return {
        "event": "inquiry.accepted",
        "idempotency_key": f"{run}-{i}",
        "data": {"inquiry_id": f"{i}", "order_no": f"IQ{i}", "doctor_name": "李明", "department": "心内科"},
        "recipients": {"patient": [f"{run}-p{i}"]},
    }


def inbox_count(prefix: str) -> int:
    from inbox.models import InboxMessage

    return InboxMessage.objects.filter(audience="patient", recipient_id__startswith=prefix).count()


def pg_connections() -> int | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cur.fetchone()[0] - 1  # less this one


def measure(stack: Stack) -> dict:
    result = {}

    # 1. 50 concurrent clients, 4 events each, each on a new connection.
    errors, statuses, times = [], [], []
    most_connections = [0]
    done = threading.Event()

    def watch_connections():
        while not done.is_set():
            n = pg_connections()
            if n is not None:
                most_connections[0] = max(most_connections[0], n)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_connections)
    watcher.start()

    def client(c):
        for j in range(4):
            try:
                status, took = stack.post(accepted("conc", c * 4 + j))
                statuses.append(status)
                times.append(took)
            except OSError as err:
                errors.append(type(err).__name__)

    started = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(client, range(50)))
    result["concurrent"] = {
        "requests": 200,
        "connection_errors": len(errors),
        "non_2xx": sum(1 for s in statuses if s >= 300),
        "seconds": time.perf_counter() - started,
        "p50_ms": pct(times, 50) * 1000,
        "p99_ms": pct(times, 99) * 1000,
    }
    done.set()
    watcher.join()
    result["concurrent"]["db_connections"] = most_connections[0] if pg_connections() is not None else None
    deadline = time.time() + 60
    while inbox_count("conc-") < 200 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)

    # 2. A burst of 100 events from 20 clients.
    with ThreadPoolExecutor(20) as pool:
        burst = list(pool.map(lambda i: stack.post(accepted("burst", i)), range(100)))
    last_answer = time.perf_counter()
    seen = inbox_count("burst-")
    while seen < 100 and time.perf_counter() - last_answer < 60:
        time.sleep(0.01)
        seen = inbox_count("burst-")
    result["burst"] = {
        "posted_seconds": sum(t for _, t in burst) / 20,
        "after_last_post_s": time.perf_counter() - last_answer,
        "in_inbox": seen,
        "non_2xx": sum(1 for s, _ in burst if s >= 300),
    }
    time.sleep(1)

    # 3. Single events, one at a time.
    from inbox.models import InboxMessage

    latencies = []
    for i in range(30):
        started = time.perf_counter()
        status, _ = stack.post(accepted("single", i))
        while not InboxMessage.objects.filter(recipient_id=f"single-p{i}").exists():
            if time.perf_counter() - started > 30:
                break
            time.sleep(0.01)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    result["single"] = {"p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}

    # 4. Reminders: 40 due over 10 s, starting 15 s from now.
    first_due = datetime.now(UTC) + timedelta(seconds=15)
    for i in range(40):
        due = first_due + timedelta(seconds=10 * i / 40)
        status, _ = stack.post(
            {
                "event": "inquiry.appointment_booked",
                "idempotency_key": f"remind-{i}",
                "data": {
                    "inquiry_id": f"r{i}",
                    "order_no": f"IQR{i}",
                    "consultation_type": "video",
                    "patient_name": "张三",
                    "doctor_name": "李明",
                    "department": "心内科",
                    "appointment_time": (due + timedelta(minutes=5)).isoformat(),
                },
                "recipients": {"patient": [f"remind-p{i}"], "doctor": [f"remind-d{i}"]},
            }
        )
        assert status < 300, status
    from scenarios.models import Message

    reminders = Message.objects.filter(
        template__code="dc_inquiry_0000004", recipient__external_id__startswith="remind-"
    )
    deadline = time.time() + 60
    lateness = []
    while time.time() < deadline:
        time.sleep(1)
        rows = {
            r.source_key: r.created_at
            for r in InboxMessage.objects.filter(audience="doctor", recipient_id__startswith="remind-")
        }
        lateness = [(rows[f"m{m.pk}:inbox"] - m.due_at).total_seconds() for m in reminders if f"m{m.pk}:inbox" in rows]
        if len(lateness) == 40:
            break
    result["reminders"] = {
        "fired": len(lateness),
        "p50_s": pct(lateness, 50),
        "p99_s": pct(lateness, 99),
        "max_s": max(lateness, default=float("nan")),
    }
    return result


def child(args):
    if args.mode == "server":
        import psycopg

        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
        db = urlunparse(urlparse(base)._replace(path=urlparse(base).path + "_embedded_bench"))
        admin = urlunparse(urlparse(db)._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            name = urlparse(db).path.lstrip("/")
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = db
        os.environ["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
        import redis

        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
        os.environ.pop("CELERY_BROKER_URL", None)
    stack = Stack(args.mode, args.port, args.fake_port)
    try:
        result = measure(stack)
    finally:
        stack.stop()
    print(json.dumps(result))


# ---------------------------------------------------------------- the parent: both modes, one table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--fake-port", type=int, default=8181)
    parser.add_argument("--mode", choices=["embedded", "server"])
    args = parser.parse_args()
    if args.mode:
        return child(args)
    results = {}
    for mode in ("embedded", "server"):
        print(f"measuring {mode}…", file=sys.stderr)
        out = subprocess.run(
            [PY, __file__, "--mode", mode, "--port", str(args.port), "--fake-port", str(args.fake_port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            print(out.stdout, out.stderr, file=sys.stderr)
            raise SystemExit(f"{mode} failed")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[mode]), file=sys.stderr)
    e, s = results["embedded"], results["server"]

    def ratio(a, b):
        return f"{a / b:.2f}×" if b else "—"

    rows = [
        (
            "50 concurrent clients × 4 POSTs: connection errors",
            e["concurrent"]["connection_errors"],
            s["concurrent"]["connection_errors"],
            "—",
            "0",
        ),
        ("  non-2xx answers", e["concurrent"]["non_2xx"], s["concurrent"]["non_2xx"], "—", "0"),
        (
            "  answer p50 / p99 ms",
            f"{e['concurrent']['p50_ms']:.0f} / {e['concurrent']['p99_ms']:.0f}",
            f"{s['concurrent']['p50_ms']:.0f} / {s['concurrent']['p99_ms']:.0f}",
            ratio(e["concurrent"]["p50_ms"], s["concurrent"]["p50_ms"]),
            "—",
        ),
        ("  PostgreSQL connections held (most)", "—", s["concurrent"]["db_connections"], "—", "—"),
        (
            "burst of 100: all in the inbox, s after the last POST",
            f"{e['burst']['after_last_post_s']:.2f} ({e['burst']['in_inbox']}/100)",
            f"{s['burst']['after_last_post_s']:.2f} ({s['burst']['in_inbox']}/100)",
            ratio(e["burst"]["after_last_post_s"], s["burst"]["after_last_post_s"]),
            "≤ 3 s",
        ),
        (
            "single event → inbox, p50 / p99 ms",
            f"{e['single']['p50_ms']:.0f} / {e['single']['p99_ms']:.0f}",
            f"{s['single']['p50_ms']:.0f} / {s['single']['p99_ms']:.0f}",
            ratio(e["single"]["p50_ms"], s["single"]["p50_ms"]),
            "p50 ≤ 300 ms",
        ),
        (
            "reminders lateness p50 / p99 / max s",
            f"{e['reminders']['p50_s']:.2f} / {e['reminders']['p99_s']:.2f} / {e['reminders']['max_s']:.2f}"
            f" ({e['reminders']['fired']}/40)",
            f"{s['reminders']['p50_s']:.2f} / {s['reminders']['p99_s']:.2f} / {s['reminders']['max_s']:.2f}"
            f" ({s['reminders']['fired']}/40)",
            ratio(e["reminders"]["p99_s"], s["reminders"]["p99_s"]),
            "p99 ≤ 2 s",
        ),
    ]
    print_table(("measurement", "embedded (SQLite, filesystem broker)", "PostgreSQL + Redis", "ratio", "target"), rows)


if __name__ == "__main__":
    main()
