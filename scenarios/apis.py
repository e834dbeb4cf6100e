"""The hospital backend's side: report events, read what became of them (Api-Key)."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from channels.otp import MAINLAND_MOBILE

from .intake import event_accept
from .otp import otp_request
from .selectors import event_detail


class RecipientsField(serializers.DictField):
    """audience → list of external ids, or of objects with an `id` and inline addresses."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.ListField(child=serializers.JSONField(), allow_empty=True), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        errors = {}
        for audience, entries in value.items():
            if audience not in ("patient", "doctor", "pharmacist", "operations"):
                errors[audience] = ["Unknown audience."]
                continue
            for index, entry in enumerate(entries):
                ok = isinstance(entry, str | int) or (
                    isinstance(entry, dict) and isinstance(entry.get("id"), str | int)
                )
                if not ok:
                    errors[f"{audience}.{index}"] = ["Expected an external id or an object with an id."]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class EventInput(serializers.Serializer):
    event = serializers.CharField(max_length=64)
    idempotency_key = serializers.CharField(max_length=128)
    occurred_at = serializers.DateTimeField(required=False)
    subject = inline_serializer(
        "Subject",
        {"type": serializers.CharField(max_length=32), "id": serializers.CharField(max_length=64)},
        required=False,
    )
    data = serializers.DictField(required=False, default=dict)
    recipients = RecipientsField(required=False, default=dict)


class PlannedMessageOutput(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.CharField()
    audience = serializers.CharField()
    recipient = serializers.CharField()
    template = serializers.CharField()
    due_at = serializers.DateTimeField()
    status = serializers.ChoiceField(
        choices=["dispatched", "scheduled", "skipped"],
        help_text="dispatched: sent now; scheduled: a reminder that fires at due_at; skipped: too_late",
    )
    scheduled = serializers.BooleanField(help_text="true: a reminder that fires at due_at")


class EventAnswerOutput(serializers.Serializer):
    event_id = serializers.IntegerField()
    event = serializers.CharField()
    subject = inline_serializer(
        "SubjectOut", {"type": serializers.CharField(), "id": serializers.CharField()}, allow_null=True
    )
    message_count = serializers.IntegerField()
    messages = PlannedMessageOutput(many=True, help_text="The first 100; GET /api/v1/events/{id} lists all.")
    skipped_rules = inline_serializer(
        "SkippedRule", {"rule": serializers.CharField(), "reason": serializers.CharField()}, many=True
    )
    cancelled_reminders = serializers.IntegerField()
    rescheduled_reminders = serializers.IntegerField()


class DeliveryStatusOutput(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_error_code = serializers.CharField()
    last_error_message = serializers.CharField()
    finished_at = serializers.DateTimeField(allow_null=True)


class EventDetailOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    idempotency_key = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    data = serializers.DictField()
    messages = inline_serializer(
        "MessageDetail",
        {
            "id": serializers.IntegerField(),
            "rule": serializers.CharField(),
            "audience": serializers.CharField(),
            "recipient": serializers.CharField(),
            "template": serializers.CharField(),
            "status": serializers.CharField(),
            "status_reason": serializers.CharField(),
            "due_at": serializers.DateTimeField(),
            "deliveries": DeliveryStatusOutput(many=True),
        },
        many=True,
    )


EXAMPLE = {
    "event": "inquiry.paid",
    "idempotency_key": "order-20261125-0001-paid",
    "data": {
        "inquiry_id": "9001",
        "order_no": "IQ202611250001",
        "consultation_type": "video",
        "patient_name": "张三",
        "doctor_name": "李明",
        "department": "心内科",
        "amount": "50.00",
        "appointment_time": "2026-11-25T15:00:00+08:00",
    },
    "recipients": {"patient": ["p-42"], "doctor": ["d-17"]},
}


class EventCreateApi(APIView):
    @extend_schema(
        request=EventInput,
        responses={202: EventAnswerOutput, 200: EventAnswerOutput},
        examples=[OpenApiExample("A patient paid for a video consultation", value=EXAMPLE, request_only=True)],
        summary="Report a business event",
    )
    def post(self, request):
        body = EventInput(data=request.data)
        body.is_valid(raise_exception=True)
        answer, created = event_accept(client=request.user.client, payload=body.validated_data)
        return Response(answer, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class EventDetailApi(APIView):
    @extend_schema(responses=EventDetailOutput, summary="An event, its messages and each delivery's status")
    def get(self, request, event_id: int):
        detail = event_detail(client=request.user.client, event_id=event_id)
        if detail is None:
            raise NotFound("No such event.")
        return Response(detail)


class OtpInput(serializers.Serializer):
    phone = serializers.RegexField(MAINLAND_MOBILE, help_text="A mainland mobile number, optionally with +86.")
    purpose = serializers.CharField(
        max_length=64, help_text="The scenario that sends the code, e.g. point.withdrawal_requested."
    )
    data = serializers.DictField(required=False, default=dict, help_text="The scenario's data, less the code.")
    subject_id = serializers.CharField(max_length=64, required=False, default="")


class OtpOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    phone = serializers.CharField(help_text="Masked.")


class OtpRequestApi(APIView):
    @extend_schema(
        request=OtpInput,
        responses={201: OtpOutput},
        examples=[
            OpenApiExample(
                "A doctor withdraws points",
                value={
                    "phone": "13800138000",
                    "purpose": "point.withdrawal_requested",
                    "data": {"withdrawal_id": "W20261125001", "amount": "300.00"},
                    "subject_id": "W20261125001",
                },
                request_only=True,
            )
        ],
        summary="Send a one-time SMS code (5-minute life; 1/min, 5/h, 10/day per phone)",
    )
    def post(self, request):
        body = OtpInput(data=request.data)
        body.is_valid(raise_exception=True)
        answer = otp_request(client=request.user.client, **body.validated_data)
        return Response(OtpOutput(answer).data, status=status.HTTP_201_CREATED)
