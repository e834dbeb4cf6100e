"""Delivery benchmark: queued deliveries to the fake providers over real HTTP, 20 ms per answer.

    .venv/bin/python bench/deliver.py [--deliveries 6000] [--latency-ms 20] [--threads 48] [--chunk 200]
    .venv/bin/python bench/deliver.py --identical  # Tencent SMS batched vs one request each

Mixed channels (WeChat official-account template, WeCom app, JPush, Aliyun SMS, Tencent SMS),
each provider answering after the injected latency. Every run in the table uses the same
database, broker and fake provider server, started here:

- event loop: Celery's default pool (prefork, one process per core), each task a chunk of
  --chunk deliveries all in flight together on the process's event loop (channels/flight.py).
- threads: the one-after-the-other path (PROVIDER_EVENT_LOOP=0) on Celery's thread pool, one
  worker process, 20 a chunk: main's way before the event loop.
- bare async HTTP, the peer: the same number of HTTP calls to the same fake server from as many
  processes as cores, each with aiohttp on uvloop (as channels/flight.py) and --chunk calls in
  flight, with no database and no Celery: what the machine allows before our code runs.
- bare threaded HTTP: the same from threads of one process (urllib3), the threads' ceiling.
- bare async HTTP with httpx.AsyncClient: why flight.py does not use it (a sixth of the calls).

Measured: deliveries/s from the enqueue to the last delivery settled, worker CPU time per
delivery (the worker process and its children, from /proc), and the whole machine's CPU time per
delivery (PostgreSQL, Redis and the fake server included), and of it the fake provider server's
and PostgreSQL's. Needs PostgreSQL and Redis
(DATABASE_URL / REDIS_URL as `make test`); creates and drops its own database `<name>_deliver`.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from ingest import db_url_for, reset_database, run, wait_http  # bench/ingest.py, beside this script
from procstat import machine_cpu, stat_cpu, tree_cpu  # bench/procstat.py, beside this script
from table import print_table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

SEED = """
import os, django
django.setup()
from datetime import timedelta
from django.utils import timezone
from channels.models import ChannelAccount, Recipient
from channels.services import DeliveryRequest, deliveries_create

url = os.environ["FAKE_PROVIDERS_URL"]
accounts = {
    "wechat_oa_template": ChannelAccount.objects.create(name="oa", channel="wechat_oa_template", provider="wechat",
        app_id="wx-oa", credentials={"app_secret": "s"}, is_default=True),
    "wecom_app": ChannelAccount.objects.create(name="wecom", channel="wecom_app", provider="wecom",
        app_id="ww-corp", credentials={"corp_secret": "s"}, options={"agentid": 1000002}, is_default=True),
    "app_push": ChannelAccount.objects.create(name="jpush", channel="app_push", provider="jpush",
        app_id="k", credentials={"master_secret": "s"}, is_default=True),
    "sms": ChannelAccount.objects.create(name="aliyun", channel="sms", provider="aliyun",
        app_id="sandbox-access-key", credentials={"access_key_secret": "sandbox-access-secret"},
        options={"sign_name": "互联网医院"}, is_default=True),
    "sms_tencent": ChannelAccount.objects.create(name="tencent", channel="sms", provider="tencent",
        app_id="1400000000", credentials={"secret_id": "sandbox-secret-id", "secret_key": "sandbox-secret-key"},
        options={"sign_name": "互联网医院"}),
}
people = [
    Recipient.objects.create(audience="doctor", external_id=f"d-{i}", phone=f"138{i:08d}",
        wechat_oa_openid=f"oa-{i}", wecom_userid=f"u{i}", push_registration_ids=[f"rid-{i}"])
    for i in range(100)
]
later = timezone.now() + timedelta(days=1)
content = {"title": "医生已接诊", "body": "李明医生已接诊您的问诊。", "template_id": "T1",
           "params": {"thing1": "李明", "time2": "2026-11-25 15:00"}, "link": {}, "options": {}}
channels = ["wechat_oa_template", "wecom_app", "app_push", "sms", "sms_tencent"]
for run in range(int(os.environ["RUNS"])):
    requests = []
    for i in range(int(os.environ["DELIVERIES"])):
        kind = channels[i % len(channels)]
        requests.append(DeliveryRequest(channel=kind.removesuffix("_tencent"), recipient=people[i % 100],
            idempotency_key=f"r{run}-{i}", content=content, account=accounts[kind], not_before=later))
    deliveries_create(requests=requests)
if os.environ.get("IDENTICAL"):  # runs 2 and 3: Tencent SMS, identical content, distinct numbers
    crowd = Recipient.objects.bulk_create([Recipient(audience="patient", external_id=f"c-{i}",
        phone=f"139{i:08d}") for i in range(2000)])
    for run in (2, 3):
        deliveries_create(requests=[DeliveryRequest(channel="sms", recipient=crowd[i % len(crowd)],
            idempotency_key=f"r{run}-{i}", content=content, account=accounts["sms_tencent"], not_before=later)
            for i in range(int(os.environ["DELIVERIES"]))])
"""

RELEASE = """
import os, sys, django
django.setup()
from django.utils import timezone
from channels.models import Delivery
from channels.services import enqueue
start, end = int(sys.argv[1]), int(sys.argv[2])
rows = Delivery.objects.filter(idempotency_key__startswith=f"r{sys.argv[3]}-")
ids = list(rows.values_list("pk", "channel"))
rows.update(not_before=timezone.now(), enqueued_at=timezone.now())
enqueue(ids)
print(len(ids))
"""


def named_cpu_seconds(prefix: str) -> float:
    """utime + stime of every live process whose name starts with `prefix` (PostgreSQL's
    backends: "postgres")."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.index("(") + 1 :].startswith(prefix):
            total += stat_cpu(text.rsplit(")", 1)[1].split())
    return total


FAKE_PID = 0  # the fake provider server's process, set by main()
HEAD = (
    "worker pool",
    "deliveries",
    "sent",
    "seconds",
    "deliveries/s",
    "worker CPU ms/delivery",
    "machine CPU ms/delivery",
    "of which fake providers / PostgreSQL",
)  # the columns of measure()'s rows


def split_cpu() -> tuple[float, float]:
    """CPU seconds so far of the fake provider server and of PostgreSQL: on this machine they
    share the cores with the workers; in production the providers are elsewhere."""
    return tree_cpu(FAKE_PID), named_cpu_seconds("postgres")


def settled(db: str, run_no: int) -> tuple[int, int, int]:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status IN ('failed','skipped')),"
            " count(*) FROM channels_delivery WHERE idempotency_key LIKE %s",
            (f"r{run_no}-%",),
        ).fetchone()
    return row


def measure(label: str, pool: list[str], run_no: int, db: str, env: dict, n: int, extra_env: dict) -> tuple:
    worker = subprocess.Popen(
        [
            str(Path(PY).parent / "celery"),
            *("-A", "notifycenter", "worker", "-Q", "bench-deliver", *pool),
            *("--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=ROOT,
        env={**env, **extra_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(6)  # Django and the pool up before the clock starts
    cpu0, machine0, split0 = tree_cpu(worker.pid), machine_cpu(), split_cpu()
    t0 = time.monotonic()
    run([PY, "-c", RELEASE, "0", "0", str(run_no)], {**env, **extra_env})
    while True:
        sent, failed, total = settled(db, run_no)
        if sent + failed >= total or time.monotonic() - t0 > 180:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    cpu, machine = tree_cpu(worker.pid) - cpu0, machine_cpu() - machine0
    fake_cpu, pg_cpu = (b - a for a, b in zip(split0, split_cpu(), strict=True))
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    print(f"{label}: {sent} sent, {failed} failed of {total} in {elapsed:.1f} s", flush=True)
    return (
        label,
        f"{total:,}",
        f"{sent:,}",
        f"{elapsed:.1f}",
        f"{total / elapsed:,.0f}",
        f"{cpu / total * 1000:.2f}",
        f"{machine / total * 1000:.2f}",
        f"{fake_cpu / total * 1000:.2f} / {pg_cpu / total * 1000:.2f}",
    )


def http_alone(fake_url: str, n: int, threads: int) -> tuple:
    """The ceiling on this machine: the same number of POSTs to the same fake server from one
    process with as many threads, through a pool like the workers' (urllib3, as
    channels/providers/http.py), with no database and no Celery."""
    import json

    import urllib3

    pool = urllib3.PoolManager(maxsize=threads, retries=False)
    body = json.dumps({"msgtype": "text", "text": {"content": "医生已接诊"}}, ensure_ascii=False).encode()
    per_thread = n // threads
    errors = []

    def one():
        for n in range(per_thread):
            # A robot key per request: the fake robot, like WeCom's, takes 20 a minute per key.
            answer = pool.request(
                "POST",
                f"{fake_url}/wecom/cgi-bin/webhook/send?key=k{threading.get_ident()}-{n}",
                body=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
            if json.loads(answer.data).get("errcode") != 0:
                errors.append(answer.data)

    pool_threads = [threading.Thread(target=one) for _ in range(threads)]
    cpu0, machine0, t0, split0 = time.process_time(), machine_cpu(), time.monotonic(), split_cpu()
    for t in pool_threads:
        t.start()
    for t in pool_threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu, machine = time.process_time() - cpu0, machine_cpu() - machine0
    fake_cpu, pg_cpu = (b - a for a, b in zip(split0, split_cpu(), strict=True))
    total = per_thread * threads
    return (
        f"HTTP alone ×{threads} threads (no DB, no Celery)",
        f"{total:,}",
        f"{total - len(errors):,}",
        f"{elapsed:.1f}",
        f"{total / elapsed:,.0f}",
        f"{cpu / total * 1000:.2f}",
        f"{machine / total * 1000:.2f}",
        f"{fake_cpu / total * 1000:.2f} / {pg_cpu / total * 1000:.2f}",
    )


ASYNC_PEER = """
import asyncio, json, sys
url, n, in_flight, tag, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
body = json.dumps({"msgtype": "text", "text": {"content": "医生已接诊"}}, ensure_ascii=False).encode()
headers = {"Content-Type": "application/json; charset=utf-8"}
async def run():
    errors = 0
    if kind == "aiohttp":  # as channels/flight.py: uvloop, aiohttp, one connection pool
        import aiohttp
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight, limit_per_host=in_flight))
        async def post(u):
            async with session.post(u, data=body, headers=headers) as r:
                return json.loads(await r.read())
    else:
        import httpx
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        session = httpx.AsyncClient(limits=limits, timeout=30)
        async def post(u):
            return (await session.post(u, content=body, headers=headers)).json()
    async def one(i):
        nonlocal errors
        # A robot key per request: the fake robot, like WeCom's, takes 20 a minute per key.
        errors += (await post(f"{url}/wecom/cgi-bin/webhook/send?key={kind}{tag}-{i}")).get("errcode") != 0
    for start in range(0, n, in_flight):  # rounds of in_flight calls, as a chunk's
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + in_flight))))
    await (session.close() if kind == "aiohttp" else session.aclose())
    print(errors)
import uvloop
uvloop.run(run())
"""


def async_alone(fake_url: str, n: int, in_flight: int, kind: str) -> tuple:
    """The same number of POSTs to the same fake server from as many processes as cores, each
    with `in_flight` calls at once on an event loop (uvloop), with no database and no Celery:
    aiohttp as channels/flight.py (the peer), or httpx's AsyncClient (for the choice of client)."""
    import resource

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: the peer's processes
        return r.ru_utime + r.ru_stime

    cores = os.cpu_count()
    cpu0, machine0, t0, split0 = children_cpu(), machine_cpu(), time.monotonic(), split_cpu()
    procs = [
        subprocess.Popen(
            [PY, "-c", ASYNC_PEER, fake_url, str(n // cores), str(in_flight), f"{t0:.0f}-{k}", kind],
            stdout=subprocess.PIPE,
        )
        for k in range(cores)
    ]
    errors = sum(int(p.communicate()[0] or 0) for p in procs)
    elapsed = time.monotonic() - t0
    machine = machine_cpu() - machine0
    cpu = children_cpu() - cpu0
    fake_cpu, pg_cpu = (b - a for a, b in zip(split0, split_cpu(), strict=True))
    total = n // cores * cores
    return (
        f"bare async HTTP, {kind}, ×{cores} processes × {in_flight} in flight (no DB, no Celery)"
        + (": the peer" if kind == "aiohttp" else ""),
        f"{total:,}",
        f"{total - errors:,}",
        f"{elapsed:.1f}",
        f"{total / elapsed:,.0f}",
        f"{cpu / total * 1000:.2f}",
        f"{machine / total * 1000:.2f}",
        f"{fake_cpu / total * 1000:.2f} / {pg_cpu / total * 1000:.2f}",
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=6000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--threads", type=int, default=48)
    parser.add_argument("--fake-port", type=int, default=18081)
    parser.add_argument("--chunk", type=int, default=200, help="deliveries per task, all in flight together")
    parser.add_argument(
        "--processes", type=int, default=0, help="prefork worker processes for the event loop (default: one per core)"
    )
    parser.add_argument(
        "--identical",
        action="store_true",
        help="only identical-content Tencent SMS to distinct numbers, one request each, then batched (200 a SendSms)",
    )
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    db = db_url_for(base, urlparse_name(base) + "_deliver")
    fake_url = f"http://127.0.0.1:{args.fake_port}"
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CELERY_QUEUE": "bench-deliver",
        "DJANGO_SECRET_KEY": "bench-only",
        "INBOX_JWT_SECRET": "bench-only-secret-of-sufficient-length-for-hs256",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
        "NOTIFYCENTER_DATA_DIR": tempfile.mkdtemp(prefix="nc-bench-"),
        "FAKE_PROVIDERS_URL": fake_url,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "DELIVERIES": str(args.deliveries),
        "RUNS": "0" if args.identical else "2",
        "IDENTICAL": "1" if args.identical else "",
    }
    print(f"database {db}, redis {env['REDIS_URL']}, {os.cpu_count()} cores, {args.latency_ms} ms per answer")
    reset_database(db)
    run([PY, "manage.py", "migrate", "-v0"], env)
    subprocess.run(
        [PY, "-c", "import redis,os;redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"], env=env, check=True
    )
    fake = subprocess.Popen(
        [PY, "manage.py", "fakeproviders", "--port", str(args.fake_port), "--latency-ms", str(args.latency_ms)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    global FAKE_PID
    FAKE_PID = fake.pid
    try:
        wait_http(f"{fake_url}/_calls")
        run([PY, "-c", SEED], env)
        cores = str(args.processes or os.cpu_count())
        if args.identical:
            identical(db, env, args, cores)
            return
        rows = [
            measure(
                f"event loop, prefork ×{cores}, {args.chunk} in flight a process, one request each",
                ["--pool", "prefork", "-c", cores],
                0,
                db,
                env,
                args.deliveries,
                # One request per delivery, as the bare calls below make: provider-side batching
                # (identical Tencent SMS) would send fewer requests; --identical measures it.
                {"PROVIDER_EVENT_LOOP": "1", "PROVIDER_CHUNK": str(args.chunk), "PROVIDER_BATCHING": "0"},
            ),
            async_alone(fake_url, args.deliveries, args.chunk, "aiohttp"),
            measure(
                f"one after the other, threads ×{args.threads} (before)",
                ["--pool", "threads", "-c", str(args.threads)],
                1,
                db,
                env,
                args.deliveries,
                {"PROVIDER_EVENT_LOOP": "0", "PROVIDER_CHUNK": "20"},
            ),
            http_alone(fake_url, args.deliveries, args.threads),
            # httpx's async pool is slow enough that a sixth of the calls tells its rate.
            async_alone(fake_url, args.deliveries // 6, args.chunk, "httpx"),
        ]
    finally:
        fake.terminate()
    peer = float(rows[1][4].replace(",", ""))
    rows = [(*row, f"{float(row[4].replace(',', '')) / peer:.2f}") for row in rows]
    print_table(
        (*HEAD, "× the peer"),
        rows,
    )


def identical(db: str, env: dict, args, cores: str) -> None:
    """Identical Tencent SMS to distinct numbers on the event loop: one request per delivery, then
    provider-side batching (200 numbers a SendSms), back to back in the same run."""
    rows = [
        measure(
            f"Tencent SMS, identical, {batching}, prefork ×{cores}",
            ["--pool", "prefork", "-c", cores],
            run_no,
            db,
            env,
            args.deliveries,
            {"PROVIDER_EVENT_LOOP": "1", "PROVIDER_CHUNK": str(args.chunk), "PROVIDER_BATCHING": flag},
        )
        for run_no, batching, flag in ((2, "one request each", "0"), (3, "batched", "1"))
    ]
    print_table(
        HEAD,
        rows,
    )
    print(f"load average {os.getloadavg()[0]:.2f}")


def urlparse_name(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).path.lstrip("/") or "notifycenter"


if __name__ == "__main__":
    main()
