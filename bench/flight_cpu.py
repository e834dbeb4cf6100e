"""Worker CPU per provider delivery, in one process: the task's body (deliveries_send handing
chunks to channels/flight.py) over real HTTP to the fake providers, 20 ms per answer.

    .venv/bin/python bench/flight_cpu.py [--deliveries 3000] [--runs 3] [--fake-port 18082] [--profile 40]

Why beside bench/deliver.py: on a shared machine throughput swings several-fold between runs,
while the CPU a process spends per delivery moves much less. This measures that CPU without
Celery (a task is 200 deliveries: its own cost is a rounding error), split into the main thread
(building requests, the database, settling) and the rest (the event loop's thread: aiohttp),
and per step of a chunk (thread CPU time in each function, main thread). `--profile N` prints
the top N functions of the last run by their own CPU time (cProfile with a thread-time clock:
the profiler's overhead inflates Python-heavy code, so read it as a ranking, not as times).

The same mixed deliveries as bench/deliver.py (its SEED): WeChat official-account template,
WeCom app, JPush, Aliyun SMS and Tencent SMS, 100 people. Needs PostgreSQL and Redis
(DATABASE_URL / REDIS_URL); one request per delivery unless --batching, as
bench/deliver.py's mixed run; makes its own database `<name>_flightcpu` afresh on each start.
"""

import argparse
import collections
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time

from deliver import SEED, urlparse_name  # bench/deliver.py, beside this script
from ingest import ROOT, db_url_for, reset_database, run, wait_http

PY = sys.executable
# (module, function) timed per step, main thread; nested ones count inside their callers too.
STEPS = [
    ("channels.flight", "chunk_claim"),
    ("channels.flight", "chunk_load"),
    ("channels.flight", "_prepare"),
    ("channels.flight", "_open_attempts"),
    ("channels.flight", "_settle"),
    ("channels.flight", "_update_deliveries"),
    ("channels.flight", "_update_attempts"),
    ("channels.flight", "status_changes_record"),
]
ROUNDS = [("start", "requests built"), ("finish", "calls and answers read")]


def timed(owner, name: str, label: str, spent: collections.Counter) -> None:
    real = getattr(owner, name)

    def step(*args, **kwargs):
        t0 = time.thread_time()
        try:
            return real(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - t0

    setattr(owner, name, step)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fake-port", type=int, default=18082)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions of the last run")
    parser.add_argument(
        "--batching", action="store_true", help="identical Tencent SMS batched (off: one request each, as deliver.py)"
    )
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    db = db_url_for(base, urlparse_name(base) + "_flightcpu")
    fake_url = f"http://127.0.0.1:{args.fake_port}"
    os.environ.update(
        {
            "DATABASE_URL": db,
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
            "DJANGO_SECRET_KEY": "bench-only",
            "INBOX_JWT_SECRET": "bench-only-secret-of-sufficient-length-for-hs256",
            "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
            "NOTIFYCENTER_DATA_DIR": tempfile.mkdtemp(prefix="nc-bench-"),
            "FAKE_PROVIDERS_URL": fake_url,
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
            "DELIVERIES": str(args.deliveries),
            "RUNS": str(args.runs),
            "PROVIDER_EVENT_LOOP": "1",
            "PROVIDER_CHUNK": "200",
            "PROVIDER_BATCHING": "1" if args.batching else "0",
        }
    )
    env = dict(os.environ)
    reset_database(db)
    run([PY, "manage.py", "migrate", "-v0"], env)
    fake = subprocess.Popen(
        [PY, "manage.py", "fakeproviders", "--port", str(args.fake_port), "--latency-ms", str(args.latency_ms)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"{fake_url}/_calls")
        run([PY, "-c", SEED], env)
        measure(args)
    finally:
        fake.terminate()


def measure(args) -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import importlib

    from django.conf import settings
    from django.utils import timezone

    from channels import flight
    from channels.models import Delivery
    from channels.sending import deliveries_send

    spent: collections.Counter = collections.Counter()
    for module, name in STEPS:
        timed(importlib.import_module(module), name, name, spent)
    for name, label in ROUNDS:
        timed(flight.Rounds, name, label, spent)
    chunk = settings.PROVIDER_CHUNK
    for run_no in range(args.runs):
        rows = Delivery.objects.filter(idempotency_key__startswith=f"r{run_no}-")
        ids = list(rows.order_by("pk").values_list("pk", flat=True))
        rows.update(not_before=timezone.now(), enqueued_at=timezone.now())
        profile = cProfile.Profile(time.thread_time) if args.profile and run_no == args.runs - 1 else None
        spent.clear()
        cpu0, main0, t0 = time.process_time(), time.thread_time(), time.monotonic()
        for start in range(0, len(ids), chunk):
            if profile:
                profile.enable()
            deliveries_send(delivery_ids=ids[start : start + chunk], remote_send=flight.chunk_send)
            if profile:
                profile.disable()
        cpu, main, wall = time.process_time() - cpu0, time.thread_time() - main0, time.monotonic() - t0
        sent = Delivery.objects.filter(idempotency_key__startswith=f"r{run_no}-", status="sent").count()
        per = 1000 / len(ids)
        print(
            f"run {run_no}{' (profiled)' if profile else ''}: {sent:,} of {len(ids):,} sent in {wall:.1f} s; "
            f"CPU ms/delivery {cpu * per:.3f} (main thread {main * per:.3f}, loop thread {(cpu - main) * per:.3f}); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        steps = ", ".join(f"{k} {v * per:.3f}" for k, v in spent.most_common())
        print(f"   main thread per step, ms/delivery: {steps}")
        if profile:
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
