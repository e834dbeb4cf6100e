"""Structured logs (LOG_FORMAT=json): one JSON object a line, carrying the ids of what the line
is about. The ids come from context variables set where the work starts: a Celery task (the
delivery ids it was handed, the message it fires) and the events API (the event id once known).
"""

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

from channels.masking import mask_phone

context_ids: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nc_log_ids", default=None)


def bind_ids(**ids) -> contextvars.Token:
    """Add ids (event_id=…, delivery_ids=…, task=…) to every log line of this context."""
    return context_ids.set({**(context_ids.get() or {}), **{k: v for k, v in ids.items() if v is not None}})


def clear_ids(token: contextvars.Token | None = None) -> None:
    if token is not None:
        context_ids.reset(token)
    else:
        context_ids.set(None)


# A mainland mobile number, alone or with its country code (+86 / 86 / 0086), not inside a longer
# run of digits (a timestamp, an id): what a phone looks like wherever it lands in a log line.
PHONE_IN_TEXT = re.compile(r"(?<![0-9])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}(?![0-9])")


def mask_phones(text: str) -> str:
    """`text` with every mobile number in it masked as the console shows them (139****5678)."""
    if not text or not any(c.isdigit() for c in text):
        return text
    return PHONE_IN_TEXT.sub(lambda m: _masked(m[0]), text)


def _masked(found: str) -> str:
    return mask_phone(re.sub(r"[^0-9]", "", found)[-11:])  # the national number, as the console masks it


class ContextIds(logging.Filter):
    """Puts the context's ids on the record, for the JSON formatter (the plain one ignores them),
    and masks mobile numbers in the message and in an exception's text, whichever formatter
    writes the line: a number an exception or a library put in its words never reaches the log."""

    def filter(self, record):
        record.nc_ids = context_ids.get() or {}
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: left for the handler to report, as logging does
            return True
        masked = mask_phones(message)
        if masked != message:
            # The arguments masked one by one, so that a formatter reading them (uvicorn's access
            # lines) still finds them; the whole line only when a number spans them or is no string.
            if isinstance(record.msg, str):
                record.msg = mask_phones(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(mask_phones(a) if isinstance(a, str) else a for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: mask_phones(a) if isinstance(a, str) else a for k, a in record.args.items()}
            try:
                still = record.getMessage() != masked
            except Exception:
                still = True
            if still:
                record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phones(record.exc_text)
        return True


class HostRefused(logging.Filter):
    """Django logs a request with a Host not in ALLOWED_HOSTS at ERROR with a traceback: a load
    balancer probing by address filled the logs with them. One WARNING line each (the message
    names the host), no traceback: a misconfigured probe, not a fault of the center."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


class QueryValues(logging.Filter):
    """uvicorn's access lines (on only without --no-access-log) carry each request's query string:
    a receipt callback's `?token=`, an admin search by openid or phone (`?q=`). Every value is
    masked but those of the parameters below, which name no one and hold no secret."""

    KEPT = frozenset({"platform", "limit", "cursor", "category", "unread", "seen", "archived", "p", "o", "all"})

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_query_masked(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        return True


# What a kept parameter's value may hold: a number, a word, a cursor (its `=` percent-encoded).
# Anything else (a `?` from a %3F in the decoded path before the query, a second `?`) is masked
# too: it may be another parameter's value read as this one's.
KEPT_VALUE = re.compile(r"[\w.,:%+-]*")


def _query_masked(path: str) -> str:
    base, _, query = path.partition("?")
    pairs = [part.partition("=") for part in query.split("&")]
    return (
        base
        + "?"
        + "&".join(f"{name}{eq}{value if not value or _kept(name, value) else '***'}" for name, eq, value in pairs)
    )


def _kept(name: str, value: str) -> bool:
    return name in QueryValues.KEPT and KEPT_VALUE.fullmatch(value) is not None


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "nc_ids", {}),
        }
        if record.exc_text or record.exc_info:
            line["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
