"""A new web process's first event, with and without the warm-up at start (notifycenter/warmup.py).

    .venv/bin/python bench/first_request.py [--rounds 3] [--events 50]

Per round and setting: one uvicorn process on notifycenter.asgi as deployed (bench/ingest.py's
start_uvicorn), the seconds until /healthz answers, the first single event's time, then the
median of the next --events events on the same connection: the steady state, the peer of the
first one. Rounds alternate the settings, so this shared machine's drift falls on each alike.
Needs what bench/ingest.py needs (PostgreSQL, Redis); it creates and drops its own database.
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import time
import types

import psycopg
from ingest import PAID, bench_database, start_web, wait_http  # bench/ingest.py, beside this script
from table import print_table


def events(port: int, key: str, count: int, tag: str) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
    took = []
    for i in range(count):
        body = json.dumps({**PAID, "idempotency_key": f"{tag}-{i}"}, ensure_ascii=False).encode()
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/events", body, headers)
        answer = conn.getresponse()
        answer.read()
        took.append((time.perf_counter() - t0) * 1000)
        if answer.status != 202:
            raise RuntimeError(f"event {i}: {answer.status}")
    conn.close()
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    server = types.SimpleNamespace(server="uvicorn", web_workers=1, web_threads=0)
    db, env, key = bench_database()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE notifycenter_apikey SET rate_limit_per_minute = 0")
    rows, firsts = [], {"0": [], "1": []}
    for round_no in range(1, args.rounds + 1):
        for warm in ("0", "1"):
            t0 = time.monotonic()
            web = start_web(args.port, server, {**env, "WEB_WARM_UP": warm})
            try:
                wait_http(f"http://127.0.0.1:{args.port}/healthz", timeout=60, interval=0.02)
                up = time.monotonic() - t0
                took = events(args.port, key, args.events + 1, f"first-{round_no}-{warm}-{time.time_ns()}")
            finally:
                web.send_signal(signal.SIGTERM)
                web.wait(30)
            steady = statistics.median(took[1:])
            firsts[warm].append(took[0])
            rows.append(
                (
                    str(round_no),
                    "warm-up at start" if warm == "1" else "none (WEB_WARM_UP=0)",
                    f"{up:.2f}",
                    f"{took[0]:.0f}",
                    f"{steady:.1f}",
                    f"{took[0] / steady:.0f}×",
                )
            )
            print(" | ".join(rows[-1]), flush=True)
    print()
    print_table(("round", "setting", "start-up s", "first event ms", "next events p50 ms", "first ÷ next"), rows)
    cold, warm = statistics.median(firsts["0"]), statistics.median(firsts["1"])
    print(
        f"\nfirst event, median of {args.rounds} rounds: {cold:.0f} ms without the warm-up, {warm:.0f} ms with it "
        f"({cold / warm:.1f}× faster); uvicorn ×1; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
