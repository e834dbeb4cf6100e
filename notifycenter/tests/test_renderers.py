"""The API's JSON renderer (orjson) writes what DRF's JSONRenderer writes."""

import datetime
import decimal
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from channels.rows import _json_text
from notifycenter.renderers import FastJSONRenderer, LocalTimeEncoder


class DrfRenderer(JSONRenderer):
    """DRF's own renderer with the API's encoder (date-times in the hospital's zone)."""

    encoder_class = LocalTimeEncoder


SHANGHAI = ZoneInfo("Asia/Shanghai")

ANSWERS = [
    {"event_id": 1, "messages": [{"id": 2, "rule": "r", "due_at": "2026-11-30T19:00:00+08:00", "scheduled": False}]},
    {"results": [{"status": 202, "body": {"subject": None, "skipped_rules": []}}] * 3},
    {"text": "张三 您好，问诊已支付 ✓", "quote": 'a "b" \\ c\n\t', "control": "\x01\x1f"},
    {"separators": "line\u2028paragraph\u2029end"},
    {"at": datetime.datetime(2026, 11, 30, 11, 0, 5, 123456, tzinfo=datetime.UTC)},
    {"at": datetime.datetime(2026, 11, 30, 19, 0, tzinfo=SHANGHAI), "day": datetime.date(2026, 11, 30)},
    {"amount": decimal.Decimal("50.00"), "id": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    {"detail": gettext_lazy("Not found."), "code": "not_found"},
    {"numbers": [0, -1, 2**53, 1.5, 0.1, 123456789.125], "flags": [True, False, None]},
    [{"nested": [[[]], {}]}],
    {1: "int key"},
]


@pytest.mark.parametrize("data", ANSWERS)
def test_the_answer_is_drfs_byte_for_byte(data):
    assert FastJSONRenderer().render(data) == DrfRenderer().render(data)


def test_a_date_time_is_written_in_the_hospital_s_zone(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    utc = {"created_at": datetime.datetime(2026, 11, 30, 18, 30, 37, 945819, tzinfo=datetime.UTC)}
    assert FastJSONRenderer().render(utc) == b'{"created_at":"2026-12-01T02:30:37.945819+08:00"}'
    assert JSONRenderer().render(utc) == b'{"created_at":"2026-11-30T18:30:37.945819Z"}'  # what DRF alone says


def test_a_float_in_exponent_form_is_the_same_number_written_shorter():
    import json

    data = {"small": 1e-7, "large": 1.5e300}
    fast, drf = FastJSONRenderer().render(data), DrfRenderer().render(data)
    assert (fast, drf) == (b'{"small":1e-7,"large":1.5e+300}', b'{"small":1e-07,"large":1.5e+300}')
    assert json.loads(fast) == json.loads(drf)


def test_what_orjson_cannot_write_goes_through_drf():
    huge = {"n": 2**70}
    assert FastJSONRenderer().render(huge) == DrfRenderer().render(huge) == b'{"n":1180591620717411303424}'


def test_no_data_renders_nothing():
    assert FastJSONRenderer().render(None) == b""


@pytest.mark.parametrize("value", [{"a": [1, "张三", None]}, {"n": 2**70}, ["x"], {2: "int key"}])
def test_a_json_column_takes_any_json_value(value):
    import json

    assert json.loads(_json_text(value).obj) == json.loads(json.dumps(value))
