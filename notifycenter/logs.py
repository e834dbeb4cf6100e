"""Structured logs (LOG_FORMAT=json): one JSON object a line, carrying the ids of what the line
is about. The ids come from context variables set where the work starts: a Celery task (the
delivery ids it was handed, the message it fires) and the events API (the event id once known).
"""

import contextvars
import json
import logging
from datetime import UTC, datetime

context_ids: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nc_log_ids", default=None)


def bind_ids(**ids) -> contextvars.Token:
    """Add ids (event_id=…, delivery_ids=…, task=…) to every log line of this context."""
    return context_ids.set({**(context_ids.get() or {}), **{k: v for k, v in ids.items() if v is not None}})


def clear_ids(token: contextvars.Token | None = None) -> None:
    if token is not None:
        context_ids.reset(token)
    else:
        context_ids.set(None)


class ContextIds(logging.Filter):
    """Puts the context's ids on the record, for the JSON formatter (the plain one ignores them)."""

    def filter(self, record):
        record.nc_ids = context_ids.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "nc_ids", {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
