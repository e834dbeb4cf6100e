"""A scenario's data schema and a rule's condition as intake checks them: compiled once per
catalog load (scenarios/catalog.py), answered exactly as jsonschema's Draft 2020-12 validator
answers.

fastjsonschema turns a schema into Python code, several times faster than jsonschema walking it,
but it speaks draft 4 to 7 and its errors are its own. So it only says "valid", and only for
schemas made of keywords that mean the same in draft 7 and 2020-12; a value it refuses, and
every schema using anything else, goes to jsonschema, whose errors (messages, field paths) are
the API's answer. `format` is an annotation in 2020-12 (jsonschema checks none by default), so
the compiled code checks none either, and it fills in no `default` (it would change the data).

A schema that is no JSON Schema is refused where it is saved (the admin and the import:
`schema_problem` in the models' clean). One stored before that refuses the event it is asked
about (409 `scenario_misconfigured`, like a disabled scenario: operations must act, the data is
not at fault), never a 500.
"""

import functools
import json
import logging

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, UnknownType
from referencing.exceptions import Unresolvable

from .errors import EventRejected

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
        self.problem = schema_problem(schema)
        if self.problem is not None:  # once per process and schema text (compiled() keeps it)
            logger.error("a stored JSON Schema is invalid, its events are refused: %s", self.problem)
        self.slow = Draft202012Validator(schema)
        self.fast = _compile(schema) if self.problem is None else None

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
        self._refuse_if_broken()
        try:
            return self.fast_says_valid(instance) or self.slow.is_valid(instance)
        except _BROKEN as err:
            raise _misconfigured(str(err)) from err

    def iter_errors(self, instance):
        self._refuse_if_broken()
        if self.fast_says_valid(instance):
            return iter(())
        return self._guarded(self.slow.iter_errors(instance))

    def _refuse_if_broken(self):
        if self.problem is not None:
            raise _misconfigured(self.problem)

    @staticmethod
    def _guarded(errors):
        # check_schema passes an unresolvable $ref: jsonschema only finds it while validating.
        try:
            yield from errors
        except _BROKEN as err:
            raise _misconfigured(str(err)) from err


# What jsonschema raises while validating with a schema that is not one.
_BROKEN = (SchemaError, UnknownType, Unresolvable)


def _misconfigured(problem: str) -> EventRejected:
    return EventRejected(
        "scenario_misconfigured",
        "The scenario's configuration is broken: its data schema or a rule's condition is not a valid JSON Schema; "
        "operations must correct it.",
        {"event": [f"misconfigured: {problem}"[:300]]},
        409,
    )


def schema_problem(schema) -> str | None:
    """What makes `schema` no Draft 2020-12 JSON Schema, with where in it (e.g. `$.type: 'objekt' is
    not valid under any of the given schemas`), or None when it is one."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        return f"{err.json_path}: {err.message}"
    return None


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
