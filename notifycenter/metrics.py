"""`/metrics` for Prometheus, behind a bearer token (METRICS_TOKEN).

Two kinds of numbers:
- counted where they happen, in each process: events accepted / replayed / refused by code (web),
  provider call latency and token refreshes (workers, channels/metrics.py). With several
  processes, PROMETHEUS_MULTIPROC_DIR (one folder per machine, shared by web and workers, emptied
  at start) adds them up; without it, each process answers for itself.
- read from PostgreSQL at scrape time, the same whichever process answers: deliveries by channel
  and status, the outbox's depth and oldest due age, reminders' lateness.
"""

import hmac
import os

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from channels.models import Delivery, DeliveryStatus
from scenarios.models import Message, MessageStatus

from .errors import error_body

EVENTS = Counter(
    "nc_events_total",
    "Events reported over the API, by outcome (accepted, replayed, refused) and error code.",
    ["outcome", "code"],
)
EVENT_PATHS = ("/api/v1/events", "/api/v1/events/batch")


def count_event(status: int, body) -> None:
    if status == 202:
        EVENTS.labels("accepted", "").inc()
    elif status == 200:
        EVENTS.labels("replayed", "").inc()
    else:
        code = body.get("code", "") if isinstance(body, dict) else ""
        EVENTS.labels("refused", code or str(status)).inc()


class EventsCountMiddleware:
    """Counts every answer of the events endpoints, one per event (a batch's items each)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method == "POST" and request.path in EVENT_PATHS:
            data = getattr(response, "data", None)
            if request.path.endswith("/batch") and response.status_code == 200 and isinstance(data, dict):
                for item in data.get("results", []):
                    count_event(item["status"], item["body"])
            else:
                count_event(response.status_code, data)
        return response


class DatabaseCollector:
    """Gauges read from PostgreSQL when scraped."""

    def collect(self):
        now = timezone.now()
        deliveries = GaugeMetricFamily(
            "nc_deliveries", "Deliveries in the table by channel and status.", labels=["channel", "status"]
        )
        for row in Delivery.objects.values("channel", "status").annotate(n=Count("id")).order_by():
            deliveries.add_metric([row["channel"], row["status"]], row["n"])
        yield deliveries
        yield from _waiting(
            Delivery.objects.filter(status=DeliveryStatus.QUEUED, not_before__lte=now),
            "not_before",
            now,
            ("nc_outbox_due", "Queued deliveries whose time has come."),
            ("nc_outbox_oldest_due_seconds", "How long the oldest due delivery has waited."),
        )
        yield from _waiting(
            Message.objects.filter(status=MessageStatus.SCHEDULED, due_at__lte=now),
            "due_at",
            now,
            ("nc_reminders_overdue", "Scheduled reminders past their time, not fired."),
            ("nc_reminders_lateness_seconds", "How late the most overdue scheduled reminder is."),
        )
        # A batch's messages whose deliveries a worker has not made yet (scenarios/expansion.py):
        # seconds at most while workers run; growing or old, the hand-off and the scan are stuck.
        yield from _waiting(
            Message.objects.filter(deliveries_pending=True),
            "dispatched_at",
            now,
            ("nc_messages_deliveries_pending", "Batch messages whose deliveries are not made yet."),
            (
                "nc_messages_deliveries_pending_oldest_seconds",
                "How long the oldest batch message has waited for its deliveries.",
            ),
        )


def _waiting(rows, since: str, now, count: tuple[str, str], age: tuple[str, str]):
    """Two gauges of rows waiting for something: how many, and how long the oldest has waited
    (by its `since` time; 0 when none), from one statement."""
    found = rows.aggregate(n=Count("id"), oldest=Min(since))
    yield GaugeMetricFamily(*count, value=found["n"])
    yield GaugeMetricFamily(*age, value=(now - found["oldest"]).total_seconds() if found["oldest"] else 0)


def _authorized(request) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def metrics(request):
    """Prometheus text format; 401 without the bearer token, 404 when METRICS_TOKEN is unset."""
    if not settings.METRICS_TOKEN:
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    if not _authorized(request):
        response = JsonResponse(error_body("not_authenticated", "A bearer token is required."), status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    else:
        from prometheus_client import REGISTRY as counted
    scraped = CollectorRegistry()
    scraped.register(DatabaseCollector())
    return HttpResponse(generate_latest(counted) + generate_latest(scraped), content_type=CONTENT_TYPE_LATEST)
