"""What a batch's deliveries cost made in the request against made by a worker afterwards
(scenarios/expansion.py, EVENT_BATCH_DEFERRED_DELIVERIES), in one process: CPU per event of the
batch request, and of the worker's expansion of its messages, the two ways alternating.

    .venv/bin/python bench/expand_cpu.py [--batches 6] [--batch-size 100] [--rounds 3] [--profile FILE]

Needs PostgreSQL and Redis as bench/ingest.py does (it reuses its `bench_database()`). The tasks
the requests hand over are published to the bench's queue, which nothing consumes; the expansion
is called here, as the worker's task calls it.
"""

import argparse
import os
import subprocess
import sys
import time

from ingest import PAID, ROOT, bench_database, bench_pythonpath  # bench/ingest.py, beside this script
from table import print_table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default="", help="write cProfile statistics of the last expansion here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    import psycopg

    db, env, key = bench_database()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE notifycenter_apikey SET rate_limit_per_minute = 0")
    env = {
        **env,
        "BENCH_API_KEY": key,
        "PYTHONPATH": bench_pythonpath(),
    }
    child_argv = [sys.executable, __file__, "--child", *sys.argv[1:]]
    return subprocess.run(child_argv, env=env, cwd=ROOT, check=True).returncode


def child(args):
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    import scenarios.intake as intake
    from scenarios.expansion import messages_expand

    client = Client(HTTP_HOST="127.0.0.1")
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {os.environ['BENCH_API_KEY']}"}
    run = time.time_ns()
    counter = [0]
    handed: list[int] = []
    intake.expansion_enqueue = handed.extend  # what the worker would be handed

    def batch() -> list[dict]:
        items = []
        for _ in range(args.batch_size):
            counter[0] += 1
            n = counter[0]
            items.append(
                {
                    **PAID,
                    "idempotency_key": f"{run}-{n}",
                    "recipients": {"patient": ["p-42"], "doctor": [f"d-{n % 64}"]},
                }
            )
        return items

    def post_batches(deferred: bool) -> float:
        settings.EVENT_BATCH_DEFERRED_DELIVERIES = deferred
        bodies = [batch() for _ in range(args.batches)]
        start = time.process_time()
        for body in bodies:
            answer = client.post("/api/v1/events/batch", body, content_type="application/json", **auth)
            assert answer.status_code == 200, answer.content[:300]
        return (time.process_time() - start) * 1000 / (args.batches * args.batch_size)

    def expand(profile: str = "") -> float:
        ids = list(handed)
        handed.clear()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
        start = time.process_time()
        size = settings.NOTIFYCENTER["SCAN_BATCH_SIZE"]
        for at in range(0, len(ids), size):  # one task per SCAN_BATCH_SIZE messages, as handed over
            messages_expand(message_ids=ids[at : at + size])
        spent = (time.process_time() - start) * 1000 / (args.batches * args.batch_size)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        return spent

    post_batches(False)  # warm: the catalog, the recipients, the compiled templates
    post_batches(True)
    expand()
    rows = []
    for round_no in range(1, args.rounds + 1):
        in_request = post_batches(False)
        rows.append((round_no, "deliveries in the request", f"{in_request:.3f}", "", f"{in_request:.3f}"))
        request = post_batches(True)
        worker = expand(args.profile if round_no == args.rounds else "")
        together = f"{request + worker:.3f}"
        rows.append((round_no, "deliveries by the worker after", f"{request:.3f}", f"{worker:.3f}", together))
    print_table(("round", "batch of events", "request ms/event", "expansion ms/event", "together ms/event"), rows)
    print(f"\nCPU (time.process_time) of this one process; batches of {args.batch_size}, {args.batches} a block")


if __name__ == "__main__":
    main()
