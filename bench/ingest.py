"""Ingest benchmark: events through the web server on PostgreSQL and Redis, next to raw psycopg and
a bare Django view that validates nothing and inserts one row (bench/bare_urls.py), served by the
same web server configuration in the same run.

    .venv/bin/python bench/ingest.py [--seconds 15] [--connections 16] [--web-workers 3] [--server uvicorn]
    .venv/bin/python bench/ingest.py --policies-only   # single events without, with, without policies

Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL, defaults as `make test`) and wrk
(`apt-get install wrk`). It creates and drops its own database `<name>_bench`, starts the web
server and Celery workers itself, and prints one table with every number measured in the same run.

The web server: `--server uvicorn` (the default) is what `make run` and deploy/ run, the ASGI
application on uvicorn (Django on WEB_THREADS threads per process, PostgreSQL through a pool of
DATABASE_POOL_MAX_SIZE, 8, per process); `--server gunicorn` is gunicorn's threaded workers
(--web-threads each) on the WSGI application, which the figures before the sixth session used.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from table import print_table  # bench/table.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

PAID = {
    "event": "inquiry.paid",
    "idempotency_key": "KEY",
    "data": {
        "inquiry_id": "9001",
        "order_no": "IQ202611250001",
        "consultation_type": "video",
        "patient_name": "张三",
        "doctor_name": "李明",
        "department": "心内科",
        "amount": "50.00",
        "appointment_time": "2026-11-25T15:00:00+08:00",
    },
    "recipients": {"patient": ["p-42"], "doctor": ["d-17"]},
}

# Each wrk thread gets its own number as the global `tid` (thread:set), which the request function
# reads. (Until the seventh session `tid` was also a chunk local here, which the request function
# read instead: 0 in every thread, so wrk's two threads sent the same keys and half the "single
# events" measured were replays or races of the other thread's.)
WRK_SCRIPT = """
local method, path, auth = METHOD, PATH, AUTH
local made = 0
function setup(thread) made = made + 1; thread:set("tid", made) end
function init(args) counter = 0; run = os.time() end
request = function()
  counter = counter + 1
  local key = run .. "-" .. tid .. "-" .. counter
  local body = string.gsub(BODY, "KEY", key)
  -- 64 doctors, so per-person policies (caps, de-duplication) meet realistic traffic, not one hot person
  body = string.gsub(body, "d%-17", "d-" .. (counter % 64))
  if method == "GET" then return wrk.format("GET", path, {["Authorization"] = auth}) end
  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Authorization"] = auth}, body)
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "non2xx": %d, "errors": %d, '
    .. '"p50_ms": %f, "p99_ms": %f, "max_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True, **kw)


def db_url_for(base: str, name: str) -> str:
    parts = urlparse(base)
    return urlunparse(parts._replace(path=f"/{name}"))


def reset_database(url: str):
    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(db_url_for(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def start_gunicorn(port: int, workers: int, threads: int, env: dict) -> subprocess.Popen:
    """gunicorn's threaded workers on the WSGI app (--server gunicorn, and bench/receipts.py)."""
    return subprocess.Popen(
        [
            str(Path(PY).parent / "gunicorn"),
            *("notifycenter.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers)),
            *("-k", "gthread", "--threads", str(threads), "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=env,
    )


def start_uvicorn(port: int, workers: int, env: dict) -> subprocess.Popen:
    """The web tier as deploy/notifycenter-web.service and scripts/run.sh run it."""
    return subprocess.Popen(
        [
            str(Path(PY).parent / "uvicorn"),
            *("notifycenter.asgi:application", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", str(workers), "--backlog", "2048", "--no-access-log", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env={"DATABASE_POOL_MAX_SIZE": "8", **env},
    )


def start_web(port: int, args, env: dict) -> subprocess.Popen:
    if args.server == "gunicorn":
        return start_gunicorn(port, args.web_workers, args.web_threads, env)
    return start_uvicorn(port, args.web_workers, env)


def server_label(args) -> str:
    if args.server == "gunicorn":
        return f"gunicorn {args.web_workers}×{args.web_threads} gthread"
    return f"uvicorn ×{args.web_workers} serving notifycenter.asgi as deployed (8 database connections each)"


def bare_view(args, env, body: str) -> dict:
    """The peer of single events: the bare view, same web server configuration, same load, measured
    once before and once after the events (the mean), so drift on a shared machine hits both."""
    port = args.port + 1
    bare_env = {**env, "DJANGO_SETTINGS_MODULE": "bare_settings", "PYTHONPATH": str(ROOT / "bench")}
    server = start_web(port, args, bare_env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        wrk(f"http://127.0.0.1:{port}", "/api/bare", body, "none", 2, args.connections)  # warm up
        return wrk(f"http://127.0.0.1:{port}", "/api/bare", body, "none", args.seconds, args.connections)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def wait_http(url, timeout=30, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 (our own local server)
                if r.status == 200:
                    return
        except OSError:
            time.sleep(interval)
    raise RuntimeError(f"{url} did not come up")


def wrk(url, path, body: str, auth: str, seconds: int, connections: int, method: str = "POST") -> dict:
    # wrk's LuaJIT knows no \u escapes: the body goes in as a UTF-8 string literal.
    script = (
        WRK_SCRIPT.replace("METHOD", json.dumps(method), 1)  # each name's first place: the locals above
        .replace("BODY", json.dumps(body, ensure_ascii=False), 1)
        .replace("PATH", json.dumps(path), 1)
        .replace("AUTH", json.dumps(auth), 1)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="utf-8") as f:
        f.write(script)
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            f.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def bare_table(conn) -> None:
    """The table the raw peer and the bare view (bench/bare_urls.py) insert into, made anew."""
    conn.execute("DROP TABLE IF EXISTS bench_raw")
    conn.execute("CREATE TABLE bench_raw (id bigserial primary key, k text unique, body jsonb, at timestamptz)")


def raw_psycopg(url: str, seconds: int, connections: int) -> dict:
    """The ceiling: single-row INSERT + COMMIT per transaction, as many connections as wrk uses."""
    with psycopg.connect(url, autocommit=True) as conn:
        bare_table(conn)
    counts = [0] * connections
    latencies: list[list[float]] = [[] for _ in range(connections)]
    stop = time.monotonic() + seconds
    body = json.dumps(PAID)

    def worker(i):
        with psycopg.connect(url) as conn:
            n = 0
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                conn.execute("INSERT INTO bench_raw (k, body, at) VALUES (%s, %s, now())", (f"{i}-{n}", body))
                conn.commit()
                latencies[i].append(time.perf_counter() - t0)
                n += 1
            counts[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    all_lat = sorted(x for lat in latencies for x in lat)
    return {
        "per_s": sum(counts) / elapsed,
        "p50_ms": statistics.median(all_lat) * 1000,
        "p99_ms": all_lat[int(len(all_lat) * 0.99)] * 1000,
    }


def start_worker(env, args) -> subprocess.Popen:
    """Celery workers on the bench's queue, prefork × --worker-concurrency; their log appended to
    BENCH_WORKER_LOG if set (a worker's errors are otherwise unseen: a slow drain says no more)."""
    path = os.environ.get("BENCH_WORKER_LOG")
    log = open(path, "a") if path else subprocess.DEVNULL  # noqa: SIM115 (the worker's, for its life)
    return subprocess.Popen(
        [
            str(Path(PY).parent / "celery"),
            "-A",
            "notifycenter",
            "worker",
            "-Q",
            "bench",
            "--pool",
            "prefork",
            "--concurrency",
            str(args.worker_concurrency),
            "--loglevel",
            os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen) -> bool:
    """SIGTERM, then 30 s for the warm shutdown; False if it had to be killed."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
        return True
    except subprocess.TimeoutExpired:
        # Seen twice in the seventh session, with thousands of WeCom robot sends (no account: each
        # fails at once) still queued: the warm shutdown outlasted 30 s. The inbox rows measured
        # here were all written by then; the worker and its children are killed.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        return False


QUEUED_INBOX_SQL = "SELECT count(*) FROM channels_delivery WHERE channel='inbox' AND status='queued'"
PENDING_MESSAGES_SQL = "SELECT count(*) FROM scenarios_message WHERE deliveries_pending"


def _worker_ready(db, url, auth, timeout: float = 60) -> None:
    """Wait until the workers have taken a task: one event in a batch, its message expanded."""
    probe = json.dumps([{**PAID, "idempotency_key": f"probe-{time.time_ns()}"}], ensure_ascii=False).encode()
    request = urllib.request.Request(  # noqa: S310 (the bench's own http://127.0.0.1 server)
        f"{url}/api/v1/events/batch", data=probe, headers={"Content-Type": "application/json", "Authorization": auth}
    )
    answer = urllib.request.urlopen(request, timeout=10)  # noqa: S310 (as above)
    event_id = json.load(answer)["results"][0]["body"]["event_id"]
    deadline = time.monotonic() + timeout
    with psycopg.connect(db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            made = conn.execute(
                "SELECT count(*) FROM channels_delivery WHERE event_ref = %s AND channel = 'inbox' "
                "AND finished_at IS NOT NULL",
                (event_id,),
            ).fetchone()[0]
            if made:
                return
            time.sleep(0.1)
    raise RuntimeError("the workers took no task within a minute")


def sustained(db, env, args, auth, batch_body) -> list[tuple]:
    """The whole pipeline for batches, the two ways a batch's deliveries can be made
    (EVENT_BATCH_DEFERRED_DELIVERIES), alternating: web and workers running together on the same
    cores, as a busy day runs. Per way, the events accepted a second, the inbox rows written in the
    same window, what was left to do at its end and how long it took, and events per second from the
    first request to the last inbox row (the rate a backlog-free day can sustain)."""
    rows = []
    for round_no in range(1, args.rounds + 1):
        # ABBA: the database grows run by run, so each way goes first in every other round.
        for deferred in ("false", "true") if round_no % 2 else ("true", "false"):
            server_env = {**env, "EVENT_BATCH_DEFERRED_DELIVERIES": deferred}
            url = f"http://127.0.0.1:{args.port + 2}"
            web = start_web(args.port + 2, args, server_env)
            worker = start_worker(server_env, args)
            try:
                wait_http(f"{url}/healthz")
                _worker_ready(db, url, auth)
                with psycopg.connect(db, autocommit=True) as conn:
                    begun = conn.execute("SELECT now()").fetchone()[0]
                batch = wrk(url, "/api/v1/events/batch", batch_body, auth, args.seconds, max(2, args.connections // 4))
                with psycopg.connect(db, autocommit=True) as conn:
                    ended = conn.execute("SELECT now()").fetchone()[0]
                    written = conn.execute(
                        "SELECT count(*) FROM channels_delivery "
                        "WHERE channel='inbox' AND finished_at BETWEEN %s AND %s",
                        (begun, ended),
                    ).fetchone()[0]
                    pending = conn.execute(PENDING_MESSAGES_SQL).fetchone()[0]
                    queued = conn.execute(QUEUED_INBOX_SQL).fetchone()[0]
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 600 and (
                        conn.execute(PENDING_MESSAGES_SQL).fetchone()[0] or conn.execute(QUEUED_INBOX_SQL).fetchone()[0]
                    ):
                        time.sleep(0.1)
                    caught_up = time.monotonic() - t0
            finally:
                stop_worker(worker)
                web.send_signal(signal.SIGTERM)
                web.wait(30)
            accepted = (batch["requests"] - batch["non2xx"]) * args.batch_size
            window = (ended - begun).total_seconds()
            rows.append(
                (
                    f"{round_no}: deliveries {'by a worker after' if deferred == 'true' else 'in the request'}",
                    f"{accepted / batch['seconds']:,.0f} events/s accepted, {written / window:,.0f} inbox rows/s "
                    f"written meanwhile; left: {pending:,} messages, {queued:,} inbox rows, done {caught_up:.1f} s "
                    f"later; {accepted / (window + caught_up):,.0f} events/s from first request to last row",
                    f"{batch['p50_ms']:.1f}",
                    f"{batch['p99_ms']:.1f}",
                    "",
                )
            )
    return rows


def drain(db, env, args, label) -> list[tuple]:
    """Start workers on what the ingest left: inbox deliveries queued, and a batch's messages
    whose deliveries a worker makes (scenarios/expansion.py); time until all inbox rows are written."""
    sql, pending_sql = QUEUED_INBOX_SQL, PENDING_MESSAGES_SQL
    with psycopg.connect(db, autocommit=True) as conn:
        # Nothing has analyzed the tables the ingest just filled: without this the progress poll
        # below read every delivery (115-160 ms a call while the workers drained, 2026-11-30);
        # now it counts through the partial indexes of queued inbox deliveries and pending messages.
        conn.execute("ANALYZE channels_delivery")
        conn.execute("ANALYZE scenarios_message")
        backlog = conn.execute(sql).fetchone()[0]
        pending = conn.execute(pending_sql).fetchone()[0]
        started = conn.execute("SELECT now()").fetchone()[0]
    worker = start_worker(env, args)
    t0 = time.monotonic()
    with psycopg.connect(db, autocommit=True) as poll:  # one connection, not a new backend a poll
        while (
            poll.execute(pending_sql).fetchone()[0] or poll.execute(sql).fetchone()[0]
        ) and time.monotonic() - t0 < 600:
            time.sleep(0.1)
    elapsed = time.monotonic() - t0
    stopped = ""
    if not stop_worker(worker):
        stopped = "; the worker took over 30 s to stop after SIGTERM and was killed"
    # Once the worker runs: from the first inbox row settled to the last, by the rows' own times.
    with psycopg.connect(db) as conn:
        first, last, settled = conn.execute(
            "SELECT min(finished_at), max(finished_at), count(*) FROM channels_delivery "
            "WHERE channel='inbox' AND finished_at >= %s",
            (started,),
        ).fetchone()
    running = max((last - first).total_seconds(), 1e-3) if first else elapsed
    waiting = f" (and {pending:,} messages whose deliveries the worker made first)" if pending else ""
    return [
        (
            f"inbox deliveries end to end: {label}",
            f"{settled / running:,.0f} deliveries/s once the worker runs",
            "",
            "",
            "≥ 1,000/s",
        ),
        (
            "  drained",
            f"{settled:,} in {elapsed:.1f} s with the worker's start ({settled / elapsed:,.0f}/s; "
            f"{backlog:,} queued at the start{waiting}), "
            f"{running:.1f} s from the first row settled to the last{stopped}",
            "",
            "",
            "",
        ),
    ]


# Every delivery policy configured, none of them deciding to skip: each event pays for reading
# preferences, the audience's quiet hours (a window that is not now), the caps' counts and the
# de-duplication lookup under the per-person lock, which is what policies cost when they let a
# message through.
POLICIES_ON = """
from datetime import time
from channels.models import Preference, PreferenceDefault, Recipient
from scenarios.models import AudiencePolicy, Rule
now = __import__("django.utils.timezone").utils.timezone.localtime().time()
start = time((now.hour + 2) % 24, 0)
end = time((now.hour + 3) % 24, 0)
for audience in ("patient", "doctor", "operations"):
    AudiencePolicy.objects.update_or_create(audience=audience, defaults={"quiet_start": start, "quiet_end": end})
    PreferenceDefault.objects.update_or_create(audience=audience, defaults={"categories": {"points": {"sms": False}}})
for r in Recipient.objects.all():
    Preference.objects.update_or_create(recipient=r, defaults={"channels": {"wecom_app": False}})
# The cap and de-duplication go where docs/operations.md recommends: the doctor's accept reminder.
Rule.objects.filter(code="doctor_accept_reminder").update(
    cap_count=1000000, cap_window_minutes=10, dedup_field="order_no", dedup_window_minutes=10
)
"""
POLICIES_OFF = """
from channels.models import Preference, PreferenceDefault
from scenarios.models import AudiencePolicy, Rule
AudiencePolicy.objects.all().delete()
PreferenceDefault.objects.all().delete()
Preference.objects.all().delete()
Rule.objects.update(cap_count=None, dedup_field="")
"""


# In one process, without the HTTP server and the load generator: each event's own cost through
# event_accept (the intake path the API calls), alternating blocks without and with policies.
# Python CPU time (time.process_time) hardly moves with other work on the machine, unlike
# throughput under wrk on 2 shared cores.
IN_PROCESS = """
import json, statistics, time
from django.db import connection
from django.test.utils import CaptureQueriesContext
from scenarios import catalog, policies
from scenarios.intake import event_accept
PAID = json.loads(__PAID__)
RUN = time.time_ns()
def block(tag, n):
    cpu, wall, queries = [], [], 0
    for i in range(n):
        p = {**PAID, "idempotency_key": f"{RUN}-{tag}-{i}", "data": {**PAID["data"], "order_no": f"{RUN}-{tag}-{i}"},
             "recipients": {"patient": ["p-42"], "doctor": [f"d-{i % 64}"]}}
        connection.queries_log.clear()  # a full log (9,000 entries) would hide the new ones
        with CaptureQueriesContext(connection) as q:
            c0, w0 = time.process_time(), time.perf_counter()
            event_accept(client="bench-in-process", payload=p)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        queries += len(q)
    return sum(cpu) / n * 1000, sum(wall) / n * 1000, queries / n
out = {"without": [], "with": []}
for round_no in range(__ROUNDS__):
    for side, script in (("without", __OFF__), ("with", __ON__)):
        exec(script, {})
        catalog._loaded.clear()
        policies._settings_cache.clear()
        block(f"warm-{side}-{round_no}", 20)
        out[side].append(block(f"{side}-{round_no}", __N__))
print("RESULT " + json.dumps(out))
"""


def in_process_rows(args, env) -> list[tuple]:
    code = (
        IN_PROCESS.replace("__PAID__", repr(json.dumps(PAID, ensure_ascii=False)))
        .replace("__ROUNDS__", str(args.rounds + 1))
        .replace("__N__", str(args.in_process_events))
        .replace("__OFF__", repr(POLICIES_OFF))
        .replace("__ON__", repr(POLICIES_ON))
    )
    stdout = run([PY, "manage.py", "shell", "-c", code], env).stdout
    out = json.loads(stdout.split("RESULT ", 1)[1])
    rows = []
    for side in ("without", "with"):
        cpu = statistics.mean(r[0] for r in out[side])
        wall = statistics.mean(r[1] for r in out[side])
        queries = statistics.mean(r[2] for r in out[side])
        rows.append((side, cpu, wall, queries, [round(r[0], 2) for r in out[side]]))
    base_cpu, base_wall = rows[0][1], rows[0][2]
    return [
        (
            f"in process, policies {side}: ms of Python CPU per event (per block {blocks})",
            f"{cpu:.2f} ms ({cpu / base_cpu:.2f}×)",
            f"wall {wall:.2f} ms ({wall / base_wall:.2f}×)",
            f"{queries:.1f} SQL",
            "≤ 1.10×" if side == "with" else "",
        )
        for side, cpu, wall, queries, blocks in rows
    ]


def policies_rows(url, body, auth, args, env) -> list[tuple]:
    """Single events alternately without and with policies, in one run: without, with, without,
    with, without. The database grows from run to run, so alternating spreads that drift over
    both sides; the ratio is the mean with over the mean without."""
    # Each event a new order number, so de-duplication looks but never skips.
    body = body.replace('"IQ202611250001"', '"KEY"')
    plan = [("without", POLICIES_OFF), ("with", POLICIES_ON)] * args.rounds + [("without", POLICIES_OFF)]
    results = []
    for label, script in plan:
        run([PY, "manage.py", "shell", "-c", script], env)
        time.sleep(6)  # each web process reloads the catalog within 5 s
        r = wrk(url, "/api/v1/events", body, auth, args.seconds, args.connections)
        results.append((label, (r["requests"] - r["non2xx"]) / r["seconds"], r))
    mean = {side: statistics.mean(rate for label, rate, _ in results if label == side) for side in ("without", "with")}
    rows = []
    for label, rate, r in results:
        rows.append(
            (
                f"single events, policies {label}",
                f"{rate:,.0f} events/s",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                "",
            )
        )
        if r["non2xx"] or r["errors"]:
            rows.append(("  of which failed", f"{r['non2xx']} non-2xx, {r['errors']} errors", "", "", ""))
    rows.append(("mean without policies", f"{mean['without']:,.0f} events/s", "", "", ""))
    rows.append(
        (
            "mean with policies",
            f"{mean['with']:,.0f} events/s ({mean['with'] / mean['without']:.2f}× without)",
            "",
            "",
            "≥ 0.90× without",
        )
    )
    return rows


def bench_pythonpath() -> str:
    """PYTHONPATH for a bench's child process: this folder (the bench's own modules) and the project."""
    return os.pathsep.join(filter(None, [str(ROOT / "bench"), str(ROOT), os.environ.get("PYTHONPATH")]))


def bench_database(**extra: str) -> tuple[str, dict, str]:
    """A fresh `<DATABASE_URL>_bench` database with the catalog and an API key, and the product's
    environment for it (bench-only secrets; Redis db 14 unless REDIS_URL says). Also used by
    bench/receipts.py."""
    base_db = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    db = db_url_for(base_db, urlparse(base_db).path.lstrip("/") + "_bench")
    data_dir = tempfile.mkdtemp(prefix="nc-bench-")
    # STATIC_ROOT: the benches serve no static file, but whitenoise warns at every process's start
    # (and for each middleware chain) when the folder is missing.
    os.makedirs(os.path.join(data_dir, "static"))
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CELERY_QUEUE": "bench",
        "DJANGO_SECRET_KEY": "bench-only",
        "INBOX_JWT_SECRET": "bench-only-secret-of-sufficient-length-for-hs256",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
        "NOTIFYCENTER_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        # The benches' webhook receivers listen on 127.0.0.1, which production settings refuse.
        "WEBHOOK_ALLOW_INTERNAL_URLS": "1",
        **extra,
    }
    print(f"database {db}, redis {env['REDIS_URL']}, {os.cpu_count()} cores", flush=True)
    reset_database(db)
    run([PY, "manage.py", "migrate", "-v0"], env)
    run([PY, "manage.py", "loaddata", "catalog", "-v0"], env)
    key = run([PY, "manage.py", "create_api_key", "bench", "--scopes", "events", "--quiet"], env).stdout.strip()
    return db, env, key


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--web-workers", type=int, default=3)
    ap.add_argument("--web-threads", type=int, default=4, help="--server gunicorn: threads per process")
    ap.add_argument("--server", choices=["uvicorn", "gunicorn"], default="uvicorn")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--worker-concurrency", type=int, default=4)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument(
        "--policies-only",
        action="store_true",
        help="only single events without, with and again without delivery policies configured",
    )
    ap.add_argument(
        "--sustained",
        action="store_true",
        help="only batches with web and workers together, deliveries in the request and by a worker, alternating",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="--policies-only: with-policies runs (between withouts); --sustained: rounds",
    )
    ap.add_argument("--in-process-events", type=int, default=300, help="--policies-only: events per in-process block")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed for the load: apt-get install wrk")

    db, env, key = bench_database()
    # The per-key request limit would measure the throttle, not the intake.
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE notifycenter_apikey SET rate_limit_per_minute = 0")
    subprocess.run(
        [PY, "-c", "import redis,os;redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"], env=env, check=True
    )

    url = f"http://127.0.0.1:{args.port}"
    web = start_web(args.port, args, env)
    rows = []
    try:
        wait_http(f"{url}/healthz")
        auth = f"Api-Key {key}"
        body = json.dumps(PAID, ensure_ascii=False)
        wrk(url, "/api/v1/events", body, auth, 3, args.connections)  # warm up

        ceiling = raw_psycopg(db, args.seconds, args.connections)
        rows.append(
            (
                "raw psycopg INSERT+COMMIT (ceiling)",
                f"{ceiling['per_s']:,.0f} rows/s",
                f"{ceiling['p50_ms']:.1f}",
                f"{ceiling['p99_ms']:.1f}",
                "—",
            )
        )

        if args.sustained:
            batch_body = json.dumps(
                [{**PAID, "idempotency_key": f"KEY-{i}"} for i in range(args.batch_size)], ensure_ascii=False
            )
            print_table(
                ("batches, web and workers together", "result", "p50 ms", "p99 ms", ""),
                sustained(db, env, args, auth, batch_body),
            )
            print(f"\n{os.cpu_count()} cores; {server_label(args)}; worker prefork ×{args.worker_concurrency}")
            return
        if args.policies_only:
            rows.extend(policies_rows(url, body, auth, args, env))
            print_table(("measurement", "result", "p50 ms", "p99 ms", "target"), rows)
            print()
            print_table(("measurement", "CPU", "wall", "statements", "target"), in_process_rows(args, env))
            print(
                f"\n{os.cpu_count()} cores; {server_label(args)}; wrk "
                f"{args.connections} connections, {args.seconds} s per run"
            )
            return
        bare = [bare_view(args, env, body)]
        single = wrk(url, "/api/v1/events", body, auth, args.seconds, args.connections)
        bare.append(bare_view(args, env, body))
        bare_rate = statistics.mean((b["requests"] - b["non2xx"]) / b["seconds"] for b in bare)
        rate = (single["requests"] - single["non2xx"]) / single["seconds"]
        rows.append(
            (
                "bare Django view, one INSERT, no checks (peer; before/after)",
                f"{bare_rate:,.0f} requests/s "
                + "/".join(f"{(b['requests'] - b['non2xx']) / b['seconds']:,.0f}" for b in bare),
                "/".join(f"{b['p50_ms']:.1f}" for b in bare),
                "/".join(f"{b['p99_ms']:.1f}" for b in bare),
                "—",
            )
        )
        rows.append(
            (
                "single events (inquiry.paid, 3 recipients)",
                f"{rate:,.0f} events/s ({rate / bare_rate:.0%} of the bare view)",
                f"{single['p50_ms']:.1f}",
                f"{single['p99_ms']:.1f}",
                "≥ 500/s, p99 ≤ 50 ms, ≥ 50%",
            )
        )
        if single["non2xx"] or single["errors"]:
            rows.append(("  of which failed", f"{single['non2xx']} non-2xx, {single['errors']} errors", "", "", ""))
        for b in bare:
            if b["non2xx"] or b["errors"]:
                rows.append(("  bare view failed", f"{b['non2xx']} non-2xx, {b['errors']} errors", "", "", ""))

        rows.extend(drain(db, env, args, "single-event backlog (a task per event)"))

        batch_body = json.dumps(
            [{**PAID, "idempotency_key": f"KEY-{i}"} for i in range(args.batch_size)], ensure_ascii=False
        )
        batch = wrk(url, "/api/v1/events/batch", batch_body, auth, args.seconds, max(2, args.connections // 4))
        brate = (batch["requests"] - batch["non2xx"]) * args.batch_size / batch["seconds"]
        rows.append(
            (
                f"batches of {args.batch_size}",
                f"{brate:,.0f} events/s",
                f"{batch['p50_ms']:.1f}",
                f"{batch['p99_ms']:.1f}",
                "≥ 5,000/s",
            )
        )
        rows.extend(drain(db, env, args, f"batch backlog (a task per {args.batch_size * 2} inbox rows)"))

        # Latency when the server is not saturated: 2 connections.
        calm = wrk(url, "/api/v1/events", body, auth, args.seconds, 2)
        rows.append(
            (
                "single events, 2 connections (unsaturated)",
                f"{calm['requests'] / calm['seconds']:,.0f} events/s",
                f"{calm['p50_ms']:.1f}",
                f"{calm['p99_ms']:.1f}",
                "p99 ≤ 50 ms",
            )
        )
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(30)

    head = ("measurement", "result", "p50 ms", "p99 ms", "target")
    print_table(head, rows)
    print(
        f"\n{os.cpu_count()} cores; {server_label(args)}; wrk "
        f"{args.connections} connections, {args.seconds} s per run; worker prefork ×{args.worker_concurrency}"
    )


if __name__ == "__main__":
    main()
