"""Prometheus metrics observed in the channels layer (workers): provider call latency and access
token refreshes. Served by the project's /metrics (notifycenter/metrics.py); across processes
through PROMETHEUS_MULTIPROC_DIR (README: Observability)."""

from prometheus_client import Counter, Histogram

PROVIDER_SECONDS = Histogram(
    "nc_provider_request_seconds",
    "Provider HTTP calls: time from request to answer, by channel, provider and result.",
    ["channel", "provider", "result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKEN_REFRESHES = Counter(
    "nc_token_refreshes_total",
    "Access tokens asked of a provider (WeChat, WeCom), by account, reason and result.",
    ["account", "reason", "result"],
)
