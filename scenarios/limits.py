"""What the events API accepts, in numbers (README: Limits; the OpenAPI schema repeats them),
and the check every value of a request goes through before anything is stored: no NUL bytes, no
lone surrogates (PostgreSQL refuses both), no number JSON cannot hold, nothing nested too deep.

Each problem comes back with its field path (`data.department`), so one bad item of a batch is
answered on its own and the others go on.
"""

import json
import math
import re

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

RECIPIENTS_PER_EVENT = 1000  # larger audiences: a broadcast (admin), not one event
RECIPIENTS_PER_BATCH = 5000
ID_MAX_LENGTH = 64  # external ids, as the directory stores them
DATA_MAX_BYTES = 32 * 1024  # an event's `data` as compact JSON
MAX_DEPTH = 16  # nesting of arrays and objects in a body
# Each rendered field of a message, per channel: a template that renders longer is refused.
RENDERED_MAX = {"title": 200, "body": 4000, "param": 1000}
# Anchor times and occurred_at: a reminder years away is a typo; far dates overflow.
YEARS_AHEAD = 10
MAX_PROBLEMS = 20


def value_problems(value, prefix: str = "") -> dict[str, list[str]]:
    """{field path: [problem]} for strings and numbers PostgreSQL or JSON cannot keep, and for
    nesting past MAX_DEPTH; empty when the value is fine. Iterative: depth cannot overflow it."""
    if _plainly_fine(value):
        return {}
    problems: dict[str, list[str]] = {}
    stack = [(value, prefix, 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = string_problem(item)
            if problem:
                problems[path or "non_field_errors"] = [problem]
        elif isinstance(item, float):
            if not math.isfinite(item):
                problems[path or "non_field_errors"] = ["Number out of range."]
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                problems[path or "non_field_errors"] = [f"Nested deeper than {MAX_DEPTH} levels."]
                continue
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and string_problem(key):
                    problems[child_path] = [f"Key: {string_problem(key)}"]
                    continue
                stack.append((child, child_path, depth + 1))
    return problems


def _plainly_fine(value) -> bool:
    """True only when value_problems would find nothing, told from the value's JSON text (C code,
    no walk in Python): no NUL (JSON writes it as an escape), no lone surrogate (the text does not
    encode), no NaN or infinity (refused), fewer brackets than MAX_DEPTH, and every string that
    looks like a date-time is real and within range. False is "look closer", never "a problem"."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    if "\\u0000" in text or text.count("{") + text.count("[") > MAX_DEPTH:
        return False
    starts = _JSON_DATETIME_START.findall(text)
    if not starts:
        return True
    whole = _JSON_DATETIME.findall(text)
    return len(whole) == len(starts) and all(_datetime_in_range(found) for found in whole)


def string_problem(text: str) -> str:
    if "\x00" in text:
        return "Null characters are not allowed."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Lone surrogate characters are not allowed."
    if _LOOKS_LIKE_DATETIME.match(text):
        return _datetime_problem(text)
    return ""


# A date-time at the ends of the calendar overflows when shifted to another zone (rendering,
# storing in UTC); such a string anywhere in a body is refused on its own path.
_LOOKS_LIKE_DATETIME = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{1,2}")
# The same at the start of a string in JSON text, and the whole string when it has no escape.
_JSON_DATETIME_START = re.compile(r'"\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{1,2}')
_JSON_DATETIME = re.compile(r'"(\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{1,2}[^"\\]*)"')


def _datetime_in_range(text: str) -> bool:
    return not _datetime_problem(text)


def _datetime_problem(text: str) -> str:
    try:
        value = parse_datetime(text)
    except ValueError:  # shaped as one, but no time on the calendar (2026-02-30T10:00)
        return _("Not a real date-time.")
    if value is not None and not 2 <= value.year <= 9998:
        return "Date-time out of range (years 2 to 9998)."
    return ""  # None: not a date-time at all (the schema or the template says so)


def data_size_problem(data: dict) -> str:
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "replace"))
    if size > DATA_MAX_BYTES:
        return f"At most {DATA_MAX_BYTES} bytes as JSON; this is {size}."
    return ""


def rendered_problems(rendered: dict) -> dict[str, list[str]]:
    """Fields of a rendered message longer than RENDERED_MAX, by path."""
    problems: dict[str, list[str]] = {}

    def check(path: str, text, limit: int):
        if isinstance(text, str) and len(text) > limit:
            problems[path] = [f"Renders to {len(text)} characters; at most {limit}."]

    check("title", rendered.get("title"), RENDERED_MAX["title"])
    check("body", rendered.get("body"), RENDERED_MAX["body"])
    for key, value in (rendered.get("link") or {}).get("params", {}).items():
        check(f"link.params.{key}", value, RENDERED_MAX["param"])
    for channel, part in (rendered.get("channels") or {}).items():
        for key, value in (part.get("params") or {}).items():
            check(f"bindings.{channel}.{key}", value, RENDERED_MAX["param"])
    return problems
