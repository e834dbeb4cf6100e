"""Rendering operations-written templates safely.

Jinja2's SandboxedEnvironment: a template can neither call into Python internals nor read
settings. StrictUndefined: a missing variable is an error, never a blank in a patient's message.
"""

import contextlib
import re
from functools import lru_cache
from urllib.parse import quote

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

# Longest string or list a template may build with `*` (a rendered field is at most 4,000
# characters: scenarios/limits.py); a longer one is a render error, not a worker out of memory.
MAX_REPEAT = 100_000


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator_name, left, right):
        sequences = (str, list, tuple)
        if operator_name == "*" and (isinstance(left, sequences) or isinstance(right, sequences)):
            sequence, times = (left, right) if isinstance(left, sequences) else (right, left)
            if isinstance(times, int) and len(sequence) * times > MAX_REPEAT:
                raise TemplateError(f"a repeated text of more than {MAX_REPEAT} characters")
        if operator_name == "**" and isinstance(right, int) and right > 64:
            raise TemplateError("an exponent above 64")
        return super().call_binop(context, operator_name, left, right)


_env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def _local_datetime(value, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """`{{ appointment_time | datetime }}`: an ISO 8601 time as the hospital's local wall time."""
    try:
        # parse_datetime raises for a well-formed impossible one (02-30, hour 25): the intake refuses
        # those (scenarios/limits.py), this filter never crashes on its own either.
        parsed = parse_datetime(value) if isinstance(value, str) else value
        if parsed is None:
            raise TemplateError(f"not a date-time: {value!r}")
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
        return timezone.localtime(parsed).strftime(fmt)
    except (OverflowError, ValueError) as err:  # year 9999 at UTC-12 is year 10000 here
        raise TemplateError(f"date-time out of range: {value!r}") from err


_env.filters["datetime"] = _local_datetime


# Jinja's words for a top-level name the data does not hold (StrictUndefined).
_UNDEFINED = re.compile(r"'(?P<name>[^']+)' is undefined")


def undefined_variable(message: str) -> str:
    """The variable a render error says the data lacks ("'x' is undefined"), or "" for any other error."""
    match = _UNDEFINED.fullmatch(message)
    return match["name"] if match else ""


class RenderError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@lru_cache(maxsize=4096)
def _compiled(source: str):
    # Compiling is most of a render's cost; a template's source is its own cache key, so an edit
    # in the admin is a new entry and never a stale one.
    return _env.from_string(source)


def text_compile(source: str) -> None:
    """Compile a template text ahead of its first render (a new process's warm-up); a broken one
    is left for that render to report, in its own words."""
    with contextlib.suppress(TemplateError):
        _compiled(source)


def render_text(source: str, context: dict, *, field: str) -> str:
    try:
        return _compiled(source).render(context)
    except TemplateError as err:
        raise RenderError(field, str(err)) from err
    except (OverflowError, MemoryError, RecursionError) as err:  # the sandbox's range cap, a huge number
        raise RenderError(field, f"{type(err).__name__}: {err}") from err


def render_mapping(mapping: dict, context: dict, *, field: str) -> dict:
    return {key: render_text(str(value), context, field=f"{field}.{key}") for key, value in mapping.items()}


def render_link(link_target, context: dict, *, audience: str) -> dict:
    """The page a message opens: the route with its parameters and its form on each platform the
    audience uses (a patient's link never opens the doctor app)."""
    if link_target is None:
        return {}
    params = render_mapping(link_target.params, context, field=f"link.{link_target.code}")
    forms = {}
    for platform, pattern in link_target.forms_for(audience).items():
        if pattern:
            try:
                # Each value encoded as one URL component: data cannot add parameters or change the page.
                forms[platform] = pattern.format_map({k: quote(str(v), safe="") for k, v in params.items()})
            except (KeyError, ValueError, IndexError) as err:
                raise RenderError(f"link.{link_target.code}.{platform}", f"unknown parameter {err}") from err
    return {"target": link_target.code, "route": link_target.route, "params": params, **forms}


def render_buttons(template, context: dict) -> list[dict]:
    """The template's inbox buttons, each with its link rendered like the message's own."""
    if not template.buttons:
        return []
    # The link targets are read once per template object; the catalog keeps templates per process.
    targets = template.__dict__.get("_button_targets")
    if targets is None:
        from .models import LinkTarget

        codes = [button.get("link") for button in template.buttons]
        targets = template.__dict__["_button_targets"] = LinkTarget.objects.in_bulk(codes, field_name="code")
    return [
        {
            "key": button["key"],
            "label": button["label"],
            "style": button.get("style", "default"),
            "link": render_link(targets.get(button.get("link")), context, audience=template.audience),
        }
        for button in template.buttons
    ]


def render_message(*, template, bindings, context: dict) -> dict:
    """Everything a message says: title, body, link, buttons, and each bound channel's parameters."""
    rendered = {
        "title": render_text(template.title, context, field="title"),
        "body": render_text(template.body, context, field="body"),
        "category": template.category,
        "link": render_link(template.link, context, audience=template.audience),
        "actions": render_buttons(template, context),
        "channels": {},
    }
    for binding in bindings:
        rendered["channels"][binding.channel] = {
            "template_id": binding.external_template_id,
            "params": render_mapping(binding.params, context, field=f"bindings.{binding.channel}"),
            "options": binding.options,
        }
    return rendered
