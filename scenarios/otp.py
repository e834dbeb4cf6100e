"""SMS codes as a scenario (catalog row 15): the backend asks for a code for a phone and a
purpose, which is a scenario whose rule uses a verification-code template bound to SMS. The
code is made and sealed in channels.otp; the message goes through the ordinary event path, so
it shows in the event's timeline and the coverage matrix like any other."""

import secrets

from django.db import transaction

from channels.models import Channel
from channels.otp import OtpError, normalize_phone, otp_attach, otp_issue, phone_digest

from .catalog import scenario_config
from .intake import event_accept
from .planning import OTP_FLAG


def otp_request(*, client: str, phone: str, purpose: str, data: dict, subject_id: str = "") -> dict:
    config = scenario_config(purpose)
    if config is None or not config.scenario.enabled:
        raise OtpError("unknown_purpose", f"No enabled scenario {purpose!r}.", {"purpose": ["unknown"]})
    rules = [
        rule
        for rule in config.rules
        if rule.template.is_verification_code
        and any(b.channel == Channel.SMS for b in config.bindings.get(rule.template_id, ()))
    ]
    if not rules:
        raise OtpError(
            "not_a_code_purpose",
            f"Scenario {purpose!r} has no rule with a verification-code template bound to SMS.",
            {"purpose": ["no verification-code SMS rule"]},
        )
    # The person is named by the phone, not by a directory entry: a code may go to a number that
    # is not (yet) the person's, and asking for one must not rewrite the directory.
    phone = normalize_phone(phone)
    person = {"id": f"otp-{phone_digest(phone)[:16]}", "phone": phone}
    with transaction.atomic():
        otp = otp_issue(phone=phone, purpose=purpose, client=client)
        payload = {
            "event": purpose,
            "idempotency_key": f"otp-{otp.pk}-{secrets.token_hex(4)}",
            "data": data,
            "recipients": {rule.audience: [person] for rule in rules},
            OTP_FLAG: True,
        }
        if subject_id:
            payload["subject"] = {"type": config.scenario.subject_type or "otp", "id": subject_id}
        answer, _ = event_accept(client=client, payload=payload)
        otp_attach(otp, event_ref=answer["event_id"])
    return {"id": otp.pk, "event_id": answer["event_id"], "expires_at": otp.expires_at, "phone": otp.phone}
