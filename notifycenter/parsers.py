"""The API's JSON parser: a body over API_MAX_BODY_BYTES is 413 `payload_too_large`; a body that
is not JSON, or nests past what Python's parser can follow, is 400 `malformed_json`; numbers JSON
cannot hold (`1e400`, NaN) and strings PostgreSQL refuses (NUL, lone surrogates) are 400 `invalid`
with their field paths. Nothing reaches a view, so nothing is stored.

The batch endpoint parses with `check_values = False` and checks each item on its own
(scenarios.apis.EventInput), so one bad event fails only itself.
"""

import codecs
import json

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from scenarios.limits import MAX_DEPTH, value_problems


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


class StrictJSONParser(JSONParser):
    check_values = True

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.API_MAX_BODY_BYTES
        request = parser_context.get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        too_large = PayloadTooLarge(f"The body is larger than {limit} bytes.")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise too_large
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
            data = json.loads(text, parse_constant=_reject_constant)
        except RecursionError as err:
            raise exceptions.ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.") from err
        except ValueError as err:  # also UnicodeDecodeError
            raise exceptions.ParseError(f"JSON parse error - {err}") from err
        if self.check_values:
            problems = value_problems(data)
            if problems:
                raise exceptions.ValidationError(problems)
        return data


class BatchJSONParser(StrictJSONParser):
    """Size and syntax for the whole body; values are checked item by item."""

    check_values = False
