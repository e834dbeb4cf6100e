"""CPU per accepted event on the intake path, in one process: no gunicorn, no wrk, no network.

The throughput bench (bench/ingest.py) needs a quiet machine; Python CPU time (time.process_time)
hardly moves with other work on a shared one. Requests go through Django's WSGI application (every
middleware, DRF, the view, PostgreSQL and the broker publish after commit), in alternating blocks:
the bare view (bench/bare_urls.py, one INSERT, no checks), single events, batches of 100.

    .venv/bin/python bench/intake_cpu.py [--events 300] [--rounds 3] [--profile /tmp/intake.prof]

Needs PostgreSQL and Redis as bench/ingest.py does (it reuses its `bench_database()`); with
--profile, cProfile's statistics of the single and batch blocks of the last round are written there
and their top functions printed.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from ingest import PAID, ROOT, bench_database, bench_pythonpath  # bench/ingest.py, beside this script
from table import print_table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300, help="single events (and bare requests) per block")
    ap.add_argument("--batches", type=int, default=6, help="batches of --batch-size per block")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default="", help="write cProfile statistics (CPU time) of the last round here")
    ap.add_argument(
        "--pyinstrument", default="", help="write pyinstrument's call trees (sampled, wall time) of the last round here"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    db, env, key = bench_database()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE notifycenter_apikey SET rate_limit_per_minute = 0")  # as bench/ingest.py
        conn.execute("CREATE TABLE bench_raw (id bigserial primary key, k text unique, body jsonb, at timestamptz)")
    env = {
        **env,
        "BENCH_API_KEY": key,
        "DJANGO_SETTINGS_MODULE": "bare_settings",
        "PYTHONPATH": bench_pythonpath(),
    }
    out = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, cwd=ROOT, check=True)
    return out.returncode


def child(args):
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    auth = f"Api-Key {os.environ['BENCH_API_KEY']}"
    run = time.time_ns()
    counter = [0]

    def event(tag: str) -> dict:
        counter[0] += 1
        n = counter[0]
        return {
            **PAID,
            "idempotency_key": f"{run}-{tag}-{n}",
            "recipients": {"patient": ["p-42"], "doctor": [f"d-{n % 64}"]},
        }

    def post(path: str, body, expect: int) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(raw)),
            "HTTP_AUTHORIZATION": auth,
            "HTTP_HOST": "127.0.0.1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(raw),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        status = []
        response = app(environ, lambda s, h, *a: status.append(s))
        content = b"".join(response)
        if hasattr(response, "close"):
            response.close()
        if int(status[0].split()[0]) != expect:
            raise SystemExit(f"{path}: {status[0]} {content[:500]!r}")

    def block(kind: str, profiler=None) -> float:
        """CPU ms per event (per request for the bare view)."""
        if kind == "batch":
            bodies = [[event("b") for _ in range(args.batch_size)] for _ in range(args.batches)]
            count = args.batches * args.batch_size
        else:
            bodies = [event(kind) for _ in range(args.events)]
            count = args.events
        path = {"bare": "/api/bare", "single": "/api/v1/events", "batch": "/api/v1/events/batch"}[kind]
        expect = 200 if kind == "batch" else 202
        if profiler:
            profiler.enable()
        c0 = time.process_time()
        for body in bodies:
            post(path, body, expect)
        cpu = time.process_time() - c0
        if profiler:
            profiler.disable()
        return cpu / count * 1000

    for kind in ("bare", "single", "batch"):  # warm: catalog, recipients, connections, imports
        block(kind)
    results: dict[str, list[float]] = {"bare": [], "single": [], "batch": []}
    profiles = {}
    for round_no in range(args.rounds):
        last = (args.profile or args.pyinstrument) and round_no == args.rounds - 1
        for kind in ("bare", "single", "batch"):
            profiler = None
            if last and kind != "bare":
                profiler = _Sampled() if args.pyinstrument else cProfile.Profile(time.process_time)
            results[kind].append(block(kind, profiler))
            if profiler:
                profiles[kind] = profiler
    bare = statistics.mean(results["bare"])
    rows = []
    for kind, label in (
        ("bare", "bare view (one INSERT, no checks): per request"),
        ("single", "POST /api/v1/events: per event"),
        ("batch", f"POST /api/v1/events/batch of {args.batch_size}: per event"),
    ):
        mean = statistics.mean(results[kind])
        blocks = ", ".join(f"{r:.2f}" for r in results[kind])
        least = min(results[kind])
        rows.append((label, f"{mean:.3f} ms", f"{mean / bare:.2f}×", f"{least:.3f} ms", blocks))
    print_table(("CPU (time.process_time)", "mean", "mean / bare's", "least block", "per block"), rows)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} rounds")
    for kind, profiler in profiles.items():
        if isinstance(profiler, _Sampled):
            path = f"{args.pyinstrument}.{kind}.txt"
            Path(path).write_text(profiler.sampler.output_text(unicode=True, show_all=False, timeline=False))
            print(f"{kind}: pyinstrument's tree in {path}")
            continue
        path = f"{args.profile}.{kind}"
        profiler.dump_stats(path)
        print(f"\n## {kind}: cProfile top by own time ({path})")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(25)
    return 0


class _Sampled:
    """pyinstrument (if installed) behind cProfile's enable/disable: samples (wall time, so database
    waits show), not skewed by the cost of tracing every small call as cProfile is."""

    def __init__(self):
        from pyinstrument import Profiler

        self.sampler = Profiler(interval=0.0002)

    def enable(self):
        self.sampler.start()

    def disable(self):
        self.sampler.stop()


if __name__ == "__main__":
    sys.exit(main())
