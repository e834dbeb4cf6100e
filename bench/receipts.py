"""Receipts benchmark: provider status reports in, status webhooks out, next to event ingest.

    .venv/bin/python bench/receipts.py [--receipts 10000] [--batch 100] [--connections 8]

Needs PostgreSQL, Redis and wrk, like bench/ingest.py (whose helpers it uses). It creates its own
database `<name>_bench`, seeds the given number of SMS deliveries already `sent`, starts gunicorn,
and measures in one run:
1. event ingest (bench/ingest.py's single-event load, wrk) on the same server, the peer;
2. Aliyun SmsReport pushes, `--batch` reports a POST (Aliyun's push size), from `--connections`
   threads, each report matched and moved to `delivered` with its timeline row;
3. webhook fan-out: the `delivery.delivered` changes published and POSTed, signed, to a local
   receiver, by notifycenter/webhooks.py, next to the same POSTs made bare with urllib3.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import urllib3
from ingest import PAID, bench_database, start_gunicorn, wait_http, wrk  # bench/ingest.py
from table import print_table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TOKEN = "bench-callback-token"


class Receiver:
    """The hospital backend's webhook endpoint: 204 to everything, counting."""

    def __init__(self):
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.count += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def seed(n: int, receiver_url: str) -> tuple[int, list[dict]]:
    """n SMS deliveries already sent (as if Aliyun took them), and the reports Aliyun would push."""
    from django.utils import timezone

    from channels.masking import mask_address
    from channels.models import ChannelAccount, Delivery, DeliveryStatus, DeliveryStatusChange, Recipient
    from notifycenter.models import WebhookEndpoint
    from scenarios.models import Event, Scenario

    account = ChannelAccount.objects.create(
        name="bench-aliyun",
        channel="sms",
        provider="aliyun",
        is_default=True,
        app_id="k",
        credentials={"access_key_secret": "s", "callback_token": TOKEN},
    )
    person = Recipient.objects.create(audience="patient", external_id="bench", phone="13812345678")
    event = Event.objects.create(
        scenario=Scenario.objects.get(code="inquiry.paid"),
        client="bench",
        idempotency_key="seed",
        request_hash="x",
        occurred_at=timezone.now(),
    )
    now = timezone.now()
    rows = [
        Delivery(
            channel="sms",
            account=account,
            recipient=person,
            address=mask_address("sms", person.phone),  # deliveries keep it masked
            content={},
            idempotency_key=f"bench-{i}",
            status=DeliveryStatus.SENT,
            not_before=now,
            finished_at=now,
            provider_message_id=f"{100000 + i}^0",
            event_ref=event.pk,
        )
        for i in range(n)
    ]
    Delivery.objects.bulk_create(rows, batch_size=2000)
    DeliveryStatusChange.objects.bulk_create(
        [DeliveryStatusChange(delivery=d, status="sent", at=now, source="send", published_at=now) for d in rows],
        batch_size=2000,
    )
    WebhookEndpoint.objects.create(
        client="bench", url=receiver_url, signing={"secret": "bench-secret-0123456789"}, events=["delivery.delivered"]
    )
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 8 * 3600))
    reports = [
        {
            "phone_number": "13812345678",
            "send_time": clock,
            "report_time": clock,
            "success": True,
            "err_code": "DELIVERED",
            "err_msg": "用户接收成功",
            "sms_size": "1",
            "biz_id": d.provider_message_id,
            "out_id": d.idempotency_key,
        }
        for d in rows
    ]
    return account.pk, reports


def post_reports(url: str, reports: list[dict], batch: int, connections: int) -> dict:
    batches = [reports[i : i + batch] for i in range(0, len(reports), batch)]
    http = urllib3.PoolManager(maxsize=connections)
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def worker(mine):
        for chunk in mine:
            t0 = time.perf_counter()
            answer = http.request(
                "POST", url, body=json.dumps(chunk).encode(), headers={"Content-Type": "application/json"}
            )
            with lock:
                latencies.append(time.perf_counter() - t0)
                failures[0] += answer.status != 200 or json.loads(answer.data) != {"code": 0, "msg": "成功"}

    threads = [threading.Thread(target=worker, args=(batches[i::connections],)) for i in range(connections)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {
        "per_s": len(reports) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "failures": failures[0],
    }


def fan_out(receiver: Receiver) -> dict:
    from channels.models import DeliveryStatusChange
    from notifycenter.models import WebhookDelivery
    from notifycenter.webhooks import webhooks_publish, webhooks_send_due

    t0 = time.monotonic()
    # Until every change is published: a batch of the ingest peer's changes makes no webhook (its
    # client has no endpoint), and stopping at the first batch that made none measured nothing.
    unpublished = DeliveryStatusChange.objects.filter(published_at__isnull=True)
    while unpublished.exists():
        webhooks_publish(limit=2000)
    published = time.monotonic() - t0
    while webhooks_send_due(limit=500):
        pass
    elapsed = time.monotonic() - t0
    total = WebhookDelivery.objects.count()
    left = WebhookDelivery.objects.exclude(status="delivered").count()
    return {"per_s": total / elapsed, "publish_s": published, "total": total, "left": left}


def bare_posts(url: str, n: int) -> float:
    """The peer: the same number of POSTs of a webhook-sized body from 8 threads, urllib3 only."""
    from concurrent.futures import ThreadPoolExecutor

    http = urllib3.PoolManager(maxsize=8)
    body = json.dumps({"id": "evt_1", "type": "delivery.delivered", "data": {"delivery_id": 1}}).encode()

    def one(_):
        http.request("POST", url, body=body, headers={"Content-Type": "application/json"})

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(n)))
    return n / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--receipts", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=10, help="The ingest peer's load time.")
    ap.add_argument("--web-workers", type=int, default=3)
    ap.add_argument("--web-threads", type=int, default=4)
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed for the ingest peer: apt-get install wrk")

    _, env, key = bench_database(NOTIFYCENTER_BEAT_SCANS="0")
    subprocess.run(
        [PY, "-c", "import redis,os;redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"], env=env, check=True
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:  # the per-key request limit would measure the throttle
        cursor.execute("UPDATE notifycenter_apikey SET rate_limit_per_minute = 0")

    receiver = Receiver()
    account_id, reports = seed(args.receipts, receiver.url)
    url = f"http://127.0.0.1:{args.port}"
    gunicorn = start_gunicorn(args.port, args.web_workers, args.web_threads, env)
    rows = []
    try:
        wait_http(f"{url}/healthz")
        auth = f"Api-Key {key}"
        body = json.dumps(PAID, ensure_ascii=False)
        wrk(url, "/api/v1/events", body, auth, 3, args.connections)  # warm up
        single = wrk(url, "/api/v1/events", body, auth, args.seconds, args.connections)
        ingest = (single["requests"] - single["non2xx"]) / single["seconds"]
        rows.append(
            (
                f"peer: event ingest (bench/ingest.py single events, {args.connections} connections)",
                f"{ingest:,.0f} events/s",
                f"{single['p50_ms']:.1f}",
                f"{single['p99_ms']:.1f}",
                "1.00",
            )
        )
        callback = f"{url}/api/v1/callbacks/aliyun/{account_id}?token={TOKEN}"
        got = post_reports(callback, reports, args.batch, args.connections)
        rows.append(
            (
                f"Aliyun SmsReport, {args.batch} a POST, {args.connections} connections ({args.receipts:,} receipts)",
                f"{got['per_s']:,.0f} receipts/s",
                f"{got['p50_ms']:.1f} / POST",
                f"{got['p99_ms']:.1f} / POST",
                f"{got['per_s'] / ingest:.2f}",
            )
        )
        if got["failures"]:
            rows.append(("  of which failed", f"{got['failures']} POSTs", "", "", ""))
        from channels.models import Delivery

        delivered = Delivery.objects.filter(status="delivered").count()
        rows.append(("  deliveries now delivered", f"{delivered:,}", "", "", ""))
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=30)

    fanned = fan_out(receiver)
    bare = bare_posts(receiver.url, fanned["total"] or 1)
    rows.append(
        (
            f"webhook fan-out: publish + signed POSTs, one sender of 8 threads ({fanned['total']:,} webhooks)",
            f"{fanned['per_s']:,.0f} webhooks/s",
            f"publish {fanned['publish_s']:.1f} s",
            "",
            f"{fanned['per_s'] / bare:.2f} of bare",
        )
    )
    rows.append(("  peer: bare urllib3 POSTs to the same receiver", f"{bare:,.0f} POSTs/s", "", "", "1.00"))
    if fanned["left"]:
        rows.append(("  webhooks not delivered", f"{fanned['left']}", "", "", ""))
    print_table(("what", "rate", "p50 ms", "p99 ms", "ratio"), rows)


if __name__ == "__main__":
    main()
