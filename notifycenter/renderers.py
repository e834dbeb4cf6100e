"""The API's JSON renderer: DRF's answer, written by orjson. The text is DRF's byte for byte but
for floats in exponent form (`1e-7`, not `1e-07`: the same number).

DRF's JSONRenderer (compact, UTF-8, U+2028 and U+2029 escaped) builds the text with Python's
json module; a batch's answer of 100 events was the largest single piece of JSON a request made,
and JSON encoding the largest cost of a batch's own code after the rows themselves (cProfile in
bench/intake_cpu.py, 2026-11-30). orjson writes the same text several times faster. Whatever
orjson does not know as DRF does goes through DRF's own encoder: date-times (DRF's form, in the
hospital's zone: LocalTimeEncoder), Decimal, UUID, lazy translations, querysets. What orjson
cannot write at all (an integer past 64 bits) is written by DRF's renderer as before.
"""

import datetime

import orjson
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class LocalTimeEncoder(JSONEncoder):
    """DRF's encoder, date-times in the hospital's zone (+08:00), as the serializers' fields write
    them: an answer built as a plain dict (a broadcast's, say) said UTC (`Z`) where the rest of the
    API says +08:00."""

    def default(self, obj):
        if isinstance(obj, datetime.datetime) and timezone.is_aware(obj):
            obj = timezone.localtime(obj)
        return super().default(obj)


class FastJSONRenderer(JSONRenderer):
    encoder_class = LocalTimeEncoder

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if indent or self.ensure_ascii or not api_settings.COMPACT_JSON:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            text = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        # As DRF: U+2028 and U+2029 are valid JSON but end a line in JavaScript.
        return text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
