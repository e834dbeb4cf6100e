"""value_problems answers from the value's JSON text when that text shows nothing to look at, and
walks the value otherwise: both ways give the same answer."""

import pytest

from scenarios import limits


def _walked(value) -> dict:
    fast, limits._plainly_fine = limits._plainly_fine, lambda value: False
    try:
        return limits.value_problems(value)
    finally:
        limits._plainly_fine = fast


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"data": {"name": "张三", "amount": 1.5, "n": 3, "ok": True, "none": None}},
        {"data": {"at": "2026-11-25T15:00:00+08:00", "day": "2026-11-25 09:30"}},
        {"data": {"at": "9999-12-31T23:59:00+00:00"}},
        {"data": {"at": "0001-01-01T00:00:00"}},
        {"data": {"0001-01-01T00:00": "a key that looks like a time"}},
        {"data": {"at": '2026-11-25T15:00:00"quoted\\'}},
        {"data": {"text": 'say \\"9999-12-31T23:59 and more'}},
        {"data": {"nul": "a\x00b"}},
        {"data": {"a\x00": "key"}},
        {"data": {"surrogate": "\ud800"}},
        {"data": {"\udfff": 1}},
        {"data": {"n": float("inf")}},
        {"data": {"n": float("nan")}},
        {"data": {"text": "\\u0000 is only six characters here"}},
        {"data": _nested(14)},
        {"data": _nested(15)},
        {"data": _nested(16)},
        {"data": _nested(40)},
        {"data": {"brackets": "[[[[[[[[[[[[[[[[[[{{{{"}},
        {"data": ("a\x00", 1)},
        "2026-11-25T15:00",
        "99999-11-25T15:00",
    ],
)
def test_the_json_text_and_the_walk_agree(value):
    assert limits.value_problems(value) == _walked(value)


def test_a_fine_value_is_told_from_its_text_alone_and_a_doubtful_one_is_walked():
    assert limits._plainly_fine({"data": {"at": "2026-11-25T15:00:00+08:00", "name": "张三", "n": [1, 2.5]}})
    for doubtful in ("a\x00b", "\ud800", "0001-01-01T00:00", float("inf"), _nested(17)):
        assert not limits._plainly_fine({"data": {"x": doubtful}})
