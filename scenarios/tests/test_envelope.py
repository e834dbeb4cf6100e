"""The envelope's fast path (scenarios/envelope.py) gives exactly what EventInput gives, or steps
aside: never a payload EventInput would refuse, never a different one."""

import math

import pytest

from scenarios.apis import EventInput
from scenarios.envelope import envelope_fast
from tests.factories import paid_event

BASE = paid_event(key="env-1")


def _with(**changes):
    item = {**BASE, **changes}
    return {k: v for k, v in item.items() if v is not _GONE}


_GONE = object()

# (body, the fast path must take it)
BODIES = [
    (BASE, True),
    (_with(occurred_at="2026-11-25T15:00:00+08:00"), True),
    (_with(occurred_at="2026-11-25T15:00:00"), True),
    (_with(occurred_at="2026-11-25 15:00"), True),
    (_with(occurred_at="yesterday"), False),
    (_with(occurred_at=123), False),
    (_with(occurred_at=None), False),
    (_with(occurred_at="9999-01-01T00:00:00Z"), False),
    (_with(occurred_at="2100-01-01T00:00:00Z"), False),
    (_with(subject={"type": "inquiry", "id": "9001"}), True),
    (_with(subject={"type": "inquiry", "id": 9001}), False),
    (_with(subject={"type": "inquiry", "id": "9001", "x": 1}), False),
    (_with(subject={"type": " inquiry", "id": "9001"}), False),
    (_with(subject={"type": "t" * 33, "id": "9001"}), False),
    (_with(subject={"type": "inquiry"}), False),
    (_with(subject="inquiry:9001"), False),
    (_with(subject=None), False),
    (_with(event=""), False),
    (_with(event=" inquiry.paid"), False),
    (_with(event="e" * 64), True),
    (_with(event="e" * 65), False),
    (_with(event=5), False),
    (_with(event=None), False),
    (_with(event=_GONE), False),
    (_with(idempotency_key=""), False),
    (_with(idempotency_key="k" * 128), True),
    (_with(idempotency_key="k" * 129), False),
    (_with(idempotency_key="k\x00"), False),
    (_with(idempotency_key="k\ud800"), False),
    (_with(idempotency_key=12), False),
    (_with(idempotency_key=_GONE), False),
    (_with(data=_GONE), True),
    (_with(data={}), True),
    (_with(data=None), False),
    (_with(data=[]), False),
    (_with(data={"a": "\x00"}), False),
    (_with(data={"a": math.inf}), False),
    (_with(data={"a": "x" * 40_000}), False),
    (_with(data={"nested": {"deep": [1, 2, {"x": None}]}}), True),
    (_with(recipients=_GONE), True),
    (_with(recipients={}), True),
    (_with(recipients={"patient": []}), True),
    (_with(recipients={"patient": [42, "p-1"], "doctor": ["d-1"], "operations": ["duty"]}), True),
    (_with(recipients=None), False),
    (_with(recipients=[]), False),
    (_with(recipients={"patient": "p-42"}), False),
    (_with(recipients={"patient": [True]}), False),
    (_with(recipients={"patient": [""]}), False),
    (_with(recipients={"patient": ["x" * 65]}), False),
    (_with(recipients={"patient": [1.5]}), False),
    (_with(recipients={"alien": ["x"]}), False),
    (_with(recipients={"patient": [{"id": "p-1", "phone": "13800138000"}]}), False),
    (_with(recipients={"patient": [{"id": "p-1", "phone": "12"}]}), False),
    (_with(recipients={"patient": [f"p-{i}" for i in range(1000)]}), True),
    (_with(recipients={"patient": [f"p-{i}" for i in range(1001)]}), False),
    (_with(extra_field={"ignored": True}), True),
    (_with(extra_field="\x00"), False),
    ([], False),
    ("event", False),
    (None, False),
]


@pytest.mark.parametrize(("body", "fast"), BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_the_fast_path_gives_what_event_input_gives_or_steps_aside(body, fast):
    slow = EventInput(data=body)
    slow_valid = slow.is_valid()

    got = envelope_fast(body)

    if fast:
        assert got is not None, "the usual shape takes the fast path"
    if got is not None:
        assert slow_valid, slow.errors
        assert got == slow.validated_data
        assert [type(v) for v in got.values()] == [type(slow.validated_data[k]) for k in got]
