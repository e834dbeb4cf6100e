"""Compiled schemas (scenarios/schemas.py) answer exactly as jsonschema's Draft 2020-12 validator:
the same errors, messages and field paths for every bad value, the same yes/no for conditions."""

import math

import pytest
from jsonschema import Draft202012Validator

from scenarios.models import Rule, Scenario
from scenarios.schemas import CompiledSchema, compiled
from scenarios.services import condition_matches, schema_errors

WRONG_VALUES = [None, True, False, 0, 1, -1, 1.0, 1.5, 2**70, math.inf, "", " ", "x" * 300, "9001", "abc", "50.001",
                "2026-13-45T99:00", "phone", "video", "letter", "\x00", "李明", [], ["9001"], {}, {"a": 1}]  # fmt: skip


def _variants(sample: dict, schema: dict):
    """The sample itself, each property missing, each property (and one unknown) set to each wrong value."""
    yield sample
    yield {}
    yield []
    yield "not an object"
    names = set(sample) | set(schema.get("properties", {})) | {"unknown_field"}
    for name in sorted(names):
        yield {k: v for k, v in sample.items() if k != name}
        for value in WRONG_VALUES:
            yield {**sample, name: value}


@pytest.mark.django_db
def test_the_catalog_schemas_answer_exactly_as_jsonschema(catalog):
    checked = 0
    for scenario in Scenario.objects.exclude(data_schema={}):
        fast = compiled(scenario.data_schema)
        slow = Draft202012Validator(scenario.data_schema)
        assert fast.fast is not None, f"{scenario.code}: the catalog's schemas are all compiled"
        for data in _variants(scenario.sample_data or {}, scenario.data_schema):
            assert schema_errors(fast, data, prefix="data") == schema_errors(slow, data, prefix="data"), (
                scenario.code,
                data,
            )
            checked += 1
    assert checked > 1000


@pytest.mark.django_db
def test_the_catalog_conditions_match_exactly_as_jsonschema(catalog):
    rules = [r for r in Rule.objects.select_related("scenario") if r.condition]
    assert rules
    for rule in rules:
        fast, slow = compiled(rule.condition), Draft202012Validator(rule.condition)
        assert fast.fast is not None
        for data in _variants(rule.scenario.sample_data or {}, rule.condition):
            assert condition_matches(fast, data) == condition_matches(slow, data), (rule.code, data)


@pytest.mark.parametrize(
    ("schema", "bad", "good"),
    [
        # 2020-12 keywords draft 7 does not know: without jsonschema they would pass anything.
        ({"dependentRequired": {"a": ["b"]}}, {"a": 1}, {"a": 1, "b": 2}),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, [1], ["x"]),
        ({"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}}, {"a": 1}, {"a": "x"}),
        ({"properties": {"a": {"unevaluatedProperties": False}}}, {"a": {"b": 1}}, {"a": {}}),
    ],
)
def test_schemas_beyond_draft_7_are_left_to_jsonschema(schema, bad, good):
    schema_check = CompiledSchema(schema)

    assert schema_check.fast is None
    assert not schema_check.is_valid(bad)
    assert list(schema_check.iter_errors(bad))
    assert schema_check.is_valid(good)


def test_formats_are_annotations_and_defaults_change_nothing():
    schema = {"properties": {"at": {"type": "string", "format": "date-time"}, "n": {"default": 5}}}
    schema_check = CompiledSchema(schema)
    data = {"at": "not a date"}

    assert schema_check.fast is not None
    assert schema_check.is_valid(data) and schema_check.fast_says_valid(data)
    assert data == {"at": "not a date"}


@pytest.mark.parametrize("schema", [{"type": "nonsense"}, {"minLength": "x"}, {"items": [{"type": "string"}]}])
def test_a_schema_jsonschema_refuses_is_not_compiled(schema):
    # jsonschema refuses it at use (the event is then refused as scenario_misconfigured, and the admin
    # and the import refuse such a schema at save); the compiled code must not say yes. A list under
    # `items` is a tuple in draft 7 and no schema at all in 2020-12.
    assert CompiledSchema(schema).fast is None
