"""The hospital backend's side: report events, read what became of them (Api-Key)."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from channels.apis import RecipientInput
from channels.models import Audience, Recipient
from channels.otp import MAINLAND_MOBILE
from channels.preferences import (
    PreferenceError,
    preference_defaults,
    preference_errors,
    preference_put,
    preference_view,
    preferences_for,
)
from channels.services import recipients_resolve
from inbox.cycles import validated

from .envelope import date_in_range_check, envelope_fast, recipients_problems
from .intake import event_accept
from .limits import (
    ID_MAX_LENGTH,
    RECIPIENTS_PER_EVENT,
    data_size_problem,
    value_problems,
)
from .otp import otp_request
from .selectors import event_detail, preferences_locked


class RecipientsField(serializers.DictField):
    """audience → list of external ids, or of objects with an `id` and inline addresses; inline
    addresses are checked exactly as PUT /api/v1/recipients checks them."""

    def __init__(self, **kwargs):
        super().__init__(
            child=serializers.ListField(child=serializers.JSONField(), allow_empty=True),
            help_text=(
                f"audience → external ids or objects {{id, phone, wechat_oa_openid, …}}; at most "
                f"{RECIPIENTS_PER_EVENT} recipients per event (larger audiences: a broadcast); ids of 1 to "
                f"{ID_MAX_LENGTH} characters; inline addresses as PUT /api/v1/recipients takes them."
            ),
            **kwargs,
        )

    def to_internal_value(self, data):
        # The checks are the recurring broadcasts' too (envelope.recipients_problems); an inline
        # entry's addresses go through RecipientInput, and come back as it cleans them.
        addresses: dict[str, dict] = {}

        def inline(path: str, entry: dict) -> dict[str, list[str]]:
            found = RecipientInput(data={k: v for k, v in entry.items() if k != "id"})
            if not found.is_valid():
                return {f"{path}.{name}": [str(m) for m in messages] for name, messages in found.errors.items()}
            addresses[path] = found.validated_data
            return {}

        problems = recipients_problems(data, inline=inline)
        if problems:
            whole = problems.pop("", None)
            raise serializers.ValidationError(whole or problems)
        return {
            audience: [
                {"id": entry["id"], **addresses[f"{audience}.{index}"]} if isinstance(entry, dict) else entry
                for index, entry in enumerate(entries)
            ]
            for audience, entries in data.items()
        }


class EventInput(serializers.Serializer):
    event = serializers.CharField(max_length=64)
    idempotency_key = serializers.CharField(max_length=128, min_length=1)
    occurred_at = serializers.DateTimeField(required=False, validators=[date_in_range_check])
    subject = inline_serializer(
        "Subject",
        {"type": serializers.CharField(max_length=32), "id": serializers.CharField(max_length=64)},
        required=False,
    )
    data = serializers.DictField(
        required=False,
        default=dict,
        help_text="The scenario's data, at most 32 KiB as JSON; no NUL bytes or lone surrogates.",
    )
    recipients = RecipientsField(required=False, default=dict)

    def to_internal_value(self, data):
        # Values PostgreSQL or JSON cannot keep, anywhere in the item, before any other check:
        # the batch endpoint parses without this check and relies on it here, item by item.
        problems = value_problems(data)
        if problems:
            raise serializers.ValidationError(problems)
        return super().to_internal_value(data)

    def validate_data(self, value):
        problem = data_size_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


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


# One component (SubjectOut) for both answers that carry the subject: one class, a field of it each.
SubjectOut = type(inline_serializer("SubjectOut", {"type": serializers.CharField(), "id": serializers.CharField()}))


class EventAnswerOutput(serializers.Serializer):
    event_id = serializers.IntegerField()
    event = serializers.CharField()
    subject = SubjectOut(allow_null=True)
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
    deferred_until = serializers.DateTimeField(allow_null=True, help_text="Held by quiet hours until then.")
    route = serializers.CharField(help_text="Why this account sends it: default, weighted, failover: …")


class EventDetailOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    idempotency_key = serializers.CharField()
    subject = SubjectOut(allow_null=True)
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
        payload = envelope_fast(request.data)
        if payload is None:  # EventInput decides, and answers with its errors
            payload = validated(EventInput(data=request.data))
        answer, created = event_accept(client=request.user.client, payload=payload)
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
        max_length=64, min_length=1, help_text="The scenario that sends the code, e.g. point.withdrawal_requested."
    )
    data = serializers.DictField(
        required=False, default=dict, help_text="The scenario's data, less the code (at most 32 KiB as JSON)."
    )
    subject_id = serializers.CharField(max_length=64, required=False, default="")

    def validate_data(self, value):
        problem = data_size_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


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
        answer = otp_request(client=request.user.client, **validated(OtpInput(data=request.data)))
        return Response(OtpOutput(answer).data, status=status.HTTP_201_CREATED)


class PreferencesBody(serializers.Serializer):
    channels = serializers.DictField(
        child=serializers.BooleanField(), required=False, default=dict, help_text="channel → on/off, every category"
    )
    categories = serializers.DictField(
        child=serializers.DictField(child=serializers.BooleanField()),
        required=False,
        default=dict,
        help_text="category → {channel → on/off}",
    )


class PreferencesOutput(serializers.Serializer):
    channels = serializers.DictField(child=serializers.BooleanField())
    categories = serializers.DictField(child=serializers.DictField(child=serializers.BooleanField()))
    locked = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="category → channels that critical messages use: no preference silences them.",
    )


PREFERENCES_EXAMPLE = {"channels": {"sms": False}, "categories": {"consultation": {"app_push": False}}}


class IsPreferenceOwner(permissions.BasePermission):
    """An app user's own preferences (Bearer JWT), or the backend's with the scope recipients."""

    def has_permission(self, request, view):
        if "audience" in view.kwargs:
            return "recipients" in getattr(request.user, "scopes", ())
        return getattr(request.user, "inbox_owner", None) is not None


class PreferencesApi(APIView):
    """GET/PUT a person's preferences; a PUT changes what it names and keeps the rest."""

    permission_classes = [IsPreferenceOwner]

    def person(self, *, create: bool) -> tuple[str, Recipient | None]:
        if "audience" in self.kwargs:
            audience, external_id = self.kwargs["audience"], self.kwargs["external_id"]
            if audience not in Audience.values:
                raise NotFound(f"Unknown audience {audience!r}; one of {', '.join(Audience.values)}.")
        else:
            audience, external_id = self.request.user.inbox_owner
        if create:
            return audience, recipients_resolve(named={audience: [external_id]})[(audience, external_id)]
        return audience, Recipient.objects.filter(audience=audience, external_id=external_id).first()

    def answer(self, audience: str, recipient: Recipient | None) -> Response:
        preference = preferences_for([recipient.pk]).get(recipient.pk) if recipient else None
        default = preference_defaults().get(audience)
        return Response({**preference_view(preference, default), "locked": preferences_locked(audience=audience)})

    @extend_schema(responses=PreferencesOutput, summary="A person's preferences, with the rows critical rules lock")
    def get(self, request, **kwargs):
        return self.answer(*self.person(create=False))

    @extend_schema(
        request=PreferencesBody,
        responses=PreferencesOutput,
        # The answer has every switch and `locked`: the body's example is no answer's.
        examples=[
            OpenApiExample("Turn off SMS, and pushes about consultations", value=PREFERENCES_EXAMPLE, request_only=True)
        ],
        summary="Change a person's preferences (what the body names; the rest stays)",
    )
    def put(self, request, **kwargs):
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["An object with channels and/or categories."]})
        channels = request.data.get("channels", {})
        categories = request.data.get("categories", {})
        errors = preference_errors(channels=channels, categories=categories)
        if errors:
            raise PreferenceError(errors)
        audience, recipient = self.person(create=True)
        preference_put(recipient=recipient, channels=channels, categories=categories)
        return self.answer(audience, recipient)
