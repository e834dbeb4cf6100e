"""Webhook publishing over a real timeline: the rows the publisher reads and rewrites.

    .venv/bin/python bench/publish.py [--events 4000] [--rounds 2]

Seeds `--events` inquiry.paid events through intake (batches of 100, Celery eager, so each inbox
delivery is sent at once: a timeline as bench/ingest.py leaves it, a creation row per delivery,
queued or skipped, and a `sent` row per inbox delivery) and one webhook endpoint subscribed to
`delivery.sent` and `message.settled`. Then publishes everything (notifycenter/webhooks.py's
`webhooks_publish`, 2,000 rows a call, as beat runs it) in alternating rounds over the same rows:

- quiet rows unpublished (as written before the tenth session: every row waits for the publisher,
  which marks it published with a non-HOT update);
- quiet rows written published (now: `channels.models.QUIET`, channels/timeline.py).

Each round starts from the same state (the loud rows unpublished, the webhook rows deleted, a
VACUUM). Reported: rows the publisher took, seconds, this process's CPU and the machine's
(PostgreSQL included) per delivery. Needs PostgreSQL and Redis as bench/ingest.py.
"""

import argparse
import json
import os
import subprocess
import sys

from ingest import PAID, ROOT, bench_database  # bench/ingest.py, beside this script
from table import print_table

CHILD = r"""
import json, os, sys, time
import django
django.setup()
from django.db import connection
from django.test import Client
from django.utils import timezone
from channels.models import QUIET, Delivery, DeliveryStatusChange
from notifycenter.models import WebhookDelivery
from notifycenter.webhooks import webhook_endpoint_create, webhooks_publish
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
from procstat import machine_cpu

args = json.loads(sys.argv[1])
client = Client(HTTP_HOST="127.0.0.1")
auth = {"HTTP_AUTHORIZATION": "Api-Key " + args["key"]}
paid = json.loads(args["paid"])
for start in range(0, args["events"], 100):
    body = [{**paid, "idempotency_key": f"P-{start + i}"} for i in range(100)]
    answer = client.post("/api/v1/events/batch", json.dumps(body), content_type="application/json", **auth)
    assert answer.status_code in (200, 202, 207), answer.content[:300]
webhook_endpoint_create(client="bench", url="http://127.0.0.1:9/", secret="s" * 24,
                        events=["delivery.sent", "message.settled"])
deliveries = Delivery.objects.count()
quiet_statuses = [str(s) for s in QUIET]
print(json.dumps({"deliveries": deliveries, "rows": DeliveryStatusChange.objects.count(),
                  "quiet": DeliveryStatusChange.objects.filter(status__in=quiet_statuses).count()}), flush=True)
for round_no in range(1, args["rounds"] + 1):
    for variant in ("quiet rows unpublished (before)", "quiet rows written published (now)"):
        WebhookDelivery.objects.all().delete()
        rows = DeliveryStatusChange.objects
        rows.exclude(status__in=quiet_statuses).update(published_at=None)
        if variant.startswith("quiet rows unpublished"):
            rows.filter(status__in=quiet_statuses).update(published_at=None)
        else:
            rows.filter(status__in=quiet_statuses).update(published_at=timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE channels_deliverystatuschange")
            cursor.execute("VACUUM ANALYZE notifycenter_webhookdelivery")
        taken = rows.filter(published_at__isnull=True).count()
        cpu0, machine0, t0 = time.process_time(), machine_cpu(), time.perf_counter()
        while webhooks_publish(limit=2000) or rows.filter(published_at__isnull=True).exists():
            pass
        seconds, cpu, machine = time.perf_counter() - t0, time.process_time() - cpu0, machine_cpu() - machine0
        print(json.dumps({"round": round_no, "variant": variant, "taken": taken, "seconds": seconds, "cpu": cpu,
                          "machine": machine, "webhooks": WebhookDelivery.objects.count()}), flush=True)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    _, env, key = bench_database(CELERY_TASK_ALWAYS_EAGER="1")
    payload = json.dumps({"key": key, "paid": json.dumps(PAID), "events": args.events, "rounds": args.rounds})
    child = subprocess.run([sys.executable, "-c", CHILD, payload], env=env, cwd=ROOT, capture_output=True, text=True)
    if child.returncode:
        sys.exit(child.stderr[-3000:])
    out = child.stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    seeded, results = lines[0], lines[1:]
    deliveries = seeded["deliveries"]
    print(
        f"\n{args.events:,} events: {deliveries:,} deliveries, {seeded['rows']:,} timeline rows, "
        f"{seeded['quiet']:,} of them quiet ({seeded['quiet'] / seeded['rows']:.0%})\n"
    )
    print_table(
        (
            "round",
            "timeline as written",
            "rows the publisher took",
            "seconds",
            "publisher CPU ms/delivery",
            "machine CPU ms/delivery",
            "webhooks made",
        ),
        [
            (
                str(r["round"]),
                r["variant"],
                f"{r['taken']:,}",
                f"{r['seconds']:.2f}",
                f"{r['cpu'] / deliveries * 1000:.3f}",
                f"{r['machine'] / deliveries * 1000:.3f}",
                f"{r['webhooks']:,}",
            )
            for r in results
        ],
    )
    print(f"\n{os.cpu_count()} cores; webhooks_publish 2,000 rows a call, one endpoint")


if __name__ == "__main__":
    sys.exit(main())
