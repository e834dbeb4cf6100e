"""Outage benchmark: events at a steady rate while Redis is stopped, then while PostgreSQL's
connections are cut; what the API answered and when the deliveries went out.

    .venv/bin/python bench/outages.py [--rate 20] [--redis-outage 60] [--pg-outage 30] [--port 8300]

Everything runs here, on its own: a throwaway redis-server on a free port (the machine's shared
Redis is never touched), a database `<name>_outages` reached through a TCP proxy in this process
(a "cut" closes every proxied connection and refuses new ones; the shared PostgreSQL server is
never restarted), gunicorn (2 workers), one Celery worker (threads) and one beat, all on the
product's settings.

The client sends `inquiry.paid` (patient and doctor: two inbox deliveries) at `--rate` a second.
A 503 is retried after its Retry-After, as a client should; any other refusal is counted and not
retried. Each phase (before / during / after the fault) is a row, so the fault-free phase is the
peer measured in the same run. Targets (issue 12): Redis stopped 60 s under 20 events/s: 0 refused,
0 × 5xx, all delivered ≤ 30 s after Redis returns; PostgreSQL cut 30 s: 503s only, nothing
accepted lost.
"""

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg
from ingest import db_url_for, reset_database, run, wait_http  # bench/ingest.py, beside this script
from table import print_table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
VENV_BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CuttableProxy:
    """A TCP proxy to PostgreSQL; `cut()` drops every connection and refuses new ones until
    `restore()`. The product connects to PostgreSQL only through it."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.cut_now = False
        self.sel = selectors.DefaultSelector()
        self.pairs: dict[socket.socket, socket.socket] = {}
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port), backlog=256)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ)
        threading.Thread(target=self._loop, daemon=True).start()

    def _close(self, sock):
        peer = self.pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self.pairs.pop(s, None)
            with contextlib.suppress(Exception):
                self.sel.unregister(s)
            with contextlib.suppress(Exception):
                s.close()

    def _loop(self):
        while True:
            for key, _ in self.sel.select(timeout=0.2):
                sock = key.fileobj
                with self.lock:
                    if sock is self.listener:
                        client, _ = self.listener.accept()
                        if self.cut_now:
                            client.close()
                            continue
                        try:
                            upstream = socket.create_connection(self.target, timeout=5)
                        except OSError:
                            client.close()
                            continue
                        for s in (client, upstream):
                            s.setblocking(False)
                            self.sel.register(s, selectors.EVENT_READ)
                        self.pairs[client], self.pairs[upstream] = upstream, client
                        continue
                    if sock not in self.pairs:
                        continue
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._close(sock)
                        continue
                    try:
                        self.pairs[sock].setblocking(True)
                        self.pairs[sock].sendall(data)
                        self.pairs[sock].setblocking(False)
                    except OSError:
                        self._close(sock)

    def cut(self):
        with self.lock:
            self.cut_now = True
            for sock in list(self.pairs):
                self._close(sock)

    def restore(self):
        with self.lock:
            self.cut_now = False


class Redis:
    """A throwaway redis-server on a free port: stop() and start() it at will."""

    def __init__(self, workdir: str):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Load:
    """Events at a steady rate; 503s retried after Retry-After; every answer recorded."""

    def __init__(self, url: str, key: str, rate: float, prefix: str):
        self.url, self.rate, self.prefix = url, rate, prefix
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
        # (answered at, idempotency key, status, code, seconds the request took)
        self.answers: list[tuple[float, str, int, str, float]] = []
        self.accepted: dict[str, float] = {}
        self.retries: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(32)
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
        self.sent = 0

    def body(self, key: str) -> bytes:
        n = int(key.split("-")[-1])
        return json.dumps(
            {
                "event": "inquiry.paid",
                "idempotency_key": key,
                "data": {
                    "inquiry_id": str(10000 + n),
                    "order_no": f"IQ{n:08d}",
                    "consultation_type": "text",
                    "patient_name": "张三",
                    "doctor_name": "李明",
                    "department": "心内科",
                    "amount": "50.00",
                    "appointment_time": "2026-12-25T15:00:00+08:00",
                },
                "recipients": {"patient": [f"p-{n % 500}"], "doctor": ["d-17"]},
            },
            ensure_ascii=False,
        ).encode()

    def send(self, key: str):
        started = time.monotonic()
        try:
            response = self.client.post(f"{self.url}/api/v1/events", content=self.body(key), headers=self.headers)
            status = response.status_code
            try:
                code = response.json().get("code", "")
            except ValueError:
                code = "not_json"
            retry_after = float(response.headers.get("Retry-After", "1"))
        except httpx.HTTPError as err:
            status, code, retry_after = 0, type(err).__name__, 1.0
        now = time.monotonic()
        with self.lock:
            self.answers.append((now, key, status, code, now - started))
            if status in (200, 202):
                self.accepted.setdefault(key, time.time())
            elif status in (503, 0):
                self.retries.append((now + retry_after, key))

    def run(self):
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            with self.lock:
                due = [k for t, k in self.retries if t <= now]
                self.retries = [(t, k) for t, k in self.retries if t > now]
            for key in due:
                self.pool.submit(self.send, key)
            if now >= next_at:
                self.sent += 1
                self.pool.submit(self.send, f"{self.prefix}-{self.sent}")
                next_at += interval
            time.sleep(min(0.01, max(0.0, next_at - time.monotonic())))

    def settle_retries(self, timeout: float):
        """After the load stops: keep retrying the 503'd events until accepted (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                pending = list(self.retries)
                self.retries = []
            if not pending:
                return
            for due, key in pending:
                time.sleep(max(0.0, due - time.monotonic()))
                self.send(key)


def start_stack(env: dict, port: int, logs: Path) -> list[subprocess.Popen]:
    procs = []
    for name, cmd in (
        ("web", [str(VENV_BIN / "gunicorn"), "notifycenter.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "-t", "30"]),
        ("worker", [PY, "-m", "celery", "-A", "notifycenter", "worker", "--pool", "threads", "-c", "8", "-l", "INFO"]),
        ("beat", [PY, "-m", "celery", "-A", "notifycenter", "beat", "-l", "INFO", "-s", str(logs / "beat-schedule")]),
    ):
        out = (logs / f"{name}.log").open("w")
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return procs


def stop_stack(procs):
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def delivered(db: str, keys: list[str]) -> dict[str, float | None]:
    """Per accepted event: when its last inbox delivery was sent (epoch seconds), or None."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            """SELECT e.idempotency_key, bool_and(d.status = 'sent'), max(d.finished_at)
               FROM scenarios_event e JOIN channels_delivery d ON d.event_ref = e.id AND d.channel = 'inbox'
               WHERE e.idempotency_key = ANY(%s) GROUP BY e.id""",
            [keys],
        ).fetchall()
    return {k: (t.timestamp() if ok and t else None) for k, ok, t in rows}


def phase_rows(name, load: Load, bounds, fault_end_epoch, db, settle_s):
    rows = []
    deadline = time.monotonic() + settle_s
    done: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        done = delivered(db, list(load.accepted))
        if len(done) == len(load.accepted) and all(v is not None for v in done.values()):
            break
        time.sleep(1)
    for label, (start, end) in bounds.items():
        answers = [a for a in load.answers if start <= a[0] < end]
        statuses = [a[2] for a in answers]
        refused = [a for a in answers if a[2] not in (200, 202, 503)]
        keys = {a[1] for a in answers if a[2] in (200, 202)}
        lags = sorted(done[k] - load.accepted[k] for k in keys if done.get(k) is not None)
        took = sorted(a[4] for a in answers)
        rows.append(
            (
                f"{name}: {label}",
                len(answers),
                f"{took[int(len(took) * 0.99)] * 1000:.0f}" if took else "",
                sum(s in (200, 202) for s in statuses),
                statuses.count(503),
                sum(500 <= s < 600 and s != 503 for s in statuses) + statuses.count(0),
                len(refused),
                f"{len(lags)}/{len(keys)}",
                f"{lags[len(lags) // 2]:.1f}" if lags else "",
                f"{lags[-1]:.1f}" if lags else "",
            )
        )
    lost = [k for k in load.accepted if k not in done]
    # Events accepted before the fault ended: how long after it their last delivery went out.
    early = [done[k] for k, at in load.accepted.items() if at <= fault_end_epoch and done.get(k) is not None]
    last = max(early, default=None)
    summary = {
        "accepted": len(load.accepted),
        "accepted but not stored": len(lost),
        "not delivered": sum(v is None for v in done.values()),
        "events accepted up to the fault's end: last one delivered after it ended (s)": (
            round(last - fault_end_epoch, 1) if last else None
        ),
    }
    return rows, summary


def scenario(name, args, env, db, key, fault_on, fault_off, fault_s, logs):
    load = Load(f"http://127.0.0.1:{args.port}", key, args.rate, prefix=name.split()[0].lower())
    runner = threading.Thread(target=load.run, daemon=True)
    t0 = time.monotonic()
    runner.start()
    time.sleep(args.warmup)
    t1 = time.monotonic()
    fault_on()
    time.sleep(fault_s)
    fault_off()
    t2 = time.monotonic()
    fault_end_epoch = time.time()
    time.sleep(args.after)
    load.stop.set()
    runner.join()
    load.pool.shutdown(wait=True)
    load.settle_retries(timeout=60)
    t3 = time.monotonic() + 60
    bounds = {"before": (t0, t1), "during": (t1, t2), "after": (t2, t3)}
    return phase_rows(name, load, bounds, fault_end_epoch, db, settle_s=120)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--redis-outage", type=float, default=60)
    parser.add_argument("--pg-outage", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--after", type=float, default=20)
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument(
        "--requeue-after", type=int, default=None, help="NOTIFYCENTER_REQUEUE_AFTER_SECONDS (default: the product's 30)"
    )
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    name = urlparse(base).path.lstrip("/") or "notifycenter"
    db = db_url_for(base, f"{name}_outages")
    reset_database(db)
    parts = urlparse(db)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    proxied = urlunparse(parts._replace(netloc=f"{userinfo}127.0.0.1:{proxy.port}"))
    workdir = tempfile.mkdtemp(prefix="nc-outages-")
    logs = Path(workdir)
    redis = Redis(workdir)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))},
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "DJANGO_SECRET_KEY": "bench-outages-not-secret",
        "INBOX_JWT_SECRET": "bench-outages-jwt-secret-of-enough-length",
        "FIELD_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWtleS0zMi1ieXRlcy1sb25nLTAwMDA=",
        "DATABASE_URL": proxied,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "NOTIFYCENTER_DATA_DIR": workdir,
        "CELERY_QUEUE": "outages",
        "LOG_LEVEL": "WARNING",
    }
    if args.requeue_after is not None:
        env["NOTIFYCENTER_REQUEUE_AFTER_SECONDS"] = str(args.requeue_after)
    run([PY, "manage.py", "migrate", "--noinput", "-v0"], {**env, "DATABASE_URL": db})
    run([PY, "manage.py", "loaddata", "catalog", "-v0"], {**env, "DATABASE_URL": db})
    key = subprocess.run(
        [PY, "manage.py", "create_api_key", "outages", "--scopes", "events", "--quiet"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": db},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    procs = start_stack(env, args.port, logs)
    try:
        rows, summaries = [], {}
        r, s = scenario("Redis stopped", args, env, db, key, redis.stop, redis.start, args.redis_outage, logs)
        rows += r
        summaries["Redis stopped"] = s
        summaries["Redis stopped"]["processes alive after"] = all(p.poll() is None for p in procs)
        r, s = scenario("PostgreSQL cut", args, env, db, key, proxy.cut, proxy.restore, args.pg_outage, logs)
        rows += r
        summaries["PostgreSQL cut"] = s
        summaries["PostgreSQL cut"]["processes alive after"] = all(p.poll() is None for p in procs)
    finally:
        stop_stack(procs)
        redis.stop()
    print(
        f"\n{args.rate:g} events/s; Redis stopped {args.redis_outage:g} s; PostgreSQL connections cut "
        f"{args.pg_outage:g} s; requeue after {args.requeue_after or 30} s; logs in {logs}"
    )
    print_table(
        (
            "phase",
            "answers",
            "answer p99 ms",
            "accepted",
            "503 (retried)",
            "5xx other",
            "refused 4xx",
            "delivered",
            "accept→sent p50 s",
            "max s",
        ),
        rows,
    )
    print()
    for label, summary in summaries.items():
        print(f"- {label}: " + ", ".join(f"{k}: {v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
