"""`/healthz` (liveness) and `/readyz` (each dependency), both without authentication and
without internals: no host, port or driver message is ever in an answer (they go to the log).

`/readyz` answers 200 while events can be accepted (the database answers), with `status`
`degraded` when a helper is away (Redis, beat, workers falling behind), and 503 when the
database is down: a load balancer takes the web process out only when it cannot do its job.
"""

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

BEAT_TICK_KEY = "nc:beat-last-tick"
# Beat sends the reminder scan every second: this long without one, beat (or Redis) is away.
BEAT_LATE_SECONDS = 30
# A due delivery waiting this long means no worker is taking them.
OUTBOX_LATE_SECONDS = 120


def healthz(request):
    """Liveness: the process answers. Nothing else is checked (see /readyz)."""
    return JsonResponse({"status": "ok"})


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as err:
        logger.warning("readyz: database unreachable: %s", err)
        return {"status": "down"}
    return {"status": "ok"}


_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """One client per process, with short timeouts: a health check must answer quickly."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    return _client


def _redis() -> tuple[dict, dict | None]:
    """Redis as cache and broker: ok, or down; with the beat tick it holds."""
    if not settings.REDIS_URL:
        return {"status": "ok", "detail": "not configured (embedded broker, local cache)"}, None
    try:
        client = redis_client()
        client.ping()
        last = client.get(BEAT_TICK_KEY)
    except redis.RedisError as err:
        logger.warning("readyz: redis unreachable: %s", err)
        return {"status": "down"}, {"status": "unknown", "detail": "kept in Redis"}
    if last is None:
        return {"status": "ok"}, {"status": "degraded", "detail": "no tick seen"}
    age = round(time.time() - float(last), 1)
    return {"status": "ok"}, {"status": "ok" if age <= BEAT_LATE_SECONDS else "degraded", "seconds_ago": age}


def oldest_due_age(now=None) -> float | None:
    """Seconds the oldest queued, due delivery has waited (the outbox's lag), or None."""
    now = now or timezone.now()
    oldest = (
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, not_before__lte=now)
        .order_by("not_before")
        .values_list("not_before", flat=True)
        .first()
    )
    return None if oldest is None else round((now - oldest).total_seconds(), 1)


def readyz(request):
    """Each dependency as ok / degraded / down; 503 only when the database is down."""
    checks = {"database": _database()}
    checks["redis"], beat = _redis()
    if beat is not None:
        checks["beat"] = beat
    if checks["database"]["status"] == "ok":
        age = oldest_due_age()
        checks["outbox"] = {
            "status": "ok" if age is None or age <= OUTBOX_LATE_SECONDS else "degraded",
            "oldest_due_seconds": age or 0,
        }
    if checks["database"]["status"] != "ok":
        overall, code = "down", 503
    elif any(c["status"] != "ok" for c in checks.values()):
        overall, code = "degraded", 200
    else:
        overall, code = "ok", 200
    response = JsonResponse({"status": overall, "checks": checks}, status=code)
    if code == 503:
        response["Retry-After"] = "5"
    return response
