"""A scenario's data schema and a rule's condition as intake checks them: compiled once per
catalog load (scenarios/catalog.py), answered exactly as jsonschema's Draft 2020-12 validator
answers.

fastjsonschema turns a schema into Python code, several times faster than jsonschema walking it,
but it speaks draft 4 to 7 and its errors are its own. So it only says "valid", and only for
schemas made of keywords that mean the same in draft 7 and 2020-12; a value it refuses, and
every schema using anything else, goes to jsonschema, whose errors (messages, field paths) are
the API's answer. `format` is an annotation in 2020-12 (jsonschema checks none by default), so
the compiled code checks none either, and it fills in no `default` (it would change the data).
"""

import functools
import json
import logging

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

logger = logging.getLogger(__name__)

# Keywords with one meaning in draft 7 and 2020-12 (for `items`: a schema, not a list of them).
_SAME_IN_BOTH = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "pattern", "minLength", "maxLength", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "items", "minItems", "maxItems",
    "uniqueItems", "if", "then", "else", "allOf", "anyOf", "oneOf", "not", "format",
    "title", "description", "default", "examples", "$comment",
}  # fmt: skip
_ONE_SCHEMA = ("additionalProperties", "propertyNames", "items", "if", "then", "else", "not")
_SCHEMA_MAPS = ("properties", "patternProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


class CompiledSchema:
    """`is_valid` and `iter_errors` as Draft202012Validator has them, compiled where that is safe."""

    def __init__(self, schema: dict):
        self.schema = schema
        self.slow = Draft202012Validator(schema)
        self.fast = _compile(schema)

    def fast_says_valid(self, instance) -> bool:
        if self.fast is None:
            return False
        try:
            self.fast(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        except Exception:  # anything odd in generated code: jsonschema decides
            return False
        return True

    def is_valid(self, instance) -> bool:
        return self.fast_says_valid(instance) or self.slow.is_valid(instance)

    def iter_errors(self, instance):
        if self.fast_says_valid(instance):
            return iter(())
        return self.slow.iter_errors(instance)


def compiled(schema: dict | None) -> CompiledSchema | None:
    """The schema's checker, shared by every load of the catalog while the schema stays the same
    (a reload comes every few seconds; compiling and checking a schema takes milliseconds)."""
    return _compiled_by_text(json.dumps(schema, sort_keys=True)) if schema else None


@functools.lru_cache(maxsize=1024)
def _compiled_by_text(text: str) -> CompiledSchema:
    return CompiledSchema(json.loads(text))


def _compile(schema: dict):
    if not _portable(schema):
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:  # jsonschema refuses it at each use (a condition then never matches)
        return None
    try:
        return fastjsonschema.compile(schema, use_default=False, use_formats=False)
    except Exception:  # a schema fastjsonschema cannot take: jsonschema alone
        logger.info("schema not compiled; checked by jsonschema alone", exc_info=True)
        return None


def _portable(schema) -> bool:
    """True when every keyword, at every depth, means the same in draft 7 and 2020-12."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= _SAME_IN_BOTH:
        return False
    for key in _ONE_SCHEMA:
        if key in schema and not _portable(schema[key]):
            return False
    for key in _SCHEMA_MAPS:
        if key in schema and not (isinstance(schema[key], dict) and all(map(_portable, schema[key].values()))):
            return False
    for key in _SCHEMA_LISTS:
        if key in schema and not (isinstance(schema[key], list) and all(map(_portable, schema[key]))):
            return False
    return True
