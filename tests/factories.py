"""Payloads as the hospital backend sends them."""

import itertools

_seq = itertools.count(1)


def paid_event(*, consultation_type: str = "video", key: str | None = None, **data) -> dict:
    """`inquiry.paid` for consultation 9001: patient p-42, doctor d-17."""
    return {
        "event": "inquiry.paid",
        "idempotency_key": key or f"paid-{next(_seq)}",
        "data": {
            "inquiry_id": "9001",
            "order_no": "IQ202611250001",
            "consultation_type": consultation_type,
            "patient_name": "张三",
            "doctor_name": "李明",
            "department": "心内科",
            "amount": "50.00",
            "appointment_time": "2026-11-25T15:00:00+08:00",
            **data,
        },
        "recipients": {"patient": ["p-42"], "doctor": ["d-17"]},
    }
