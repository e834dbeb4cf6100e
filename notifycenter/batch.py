"""`POST /api/v1/events/batch`: many events in one request, each answered exactly as the single
endpoint would answer it. It lives here because it speaks the project's error format."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from scenarios.apis import EXAMPLE, EventInput
from scenarios.envelope import envelope_fast
from scenarios.errors import EventRejected
from scenarios.intake import events_accept
from scenarios.limits import RECIPIENTS_PER_BATCH

from .errors import error_body, flatten
from .parsers import BatchJSONParser

BATCH_LIMIT = 500
BATCH_ANSWER_EXAMPLE = {
    "results": [
        {"index": 0, "status": 202, "body": {"event_id": 1, "event": "inquiry.paid", "message_count": 3}},
        {
            "index": 1,
            "status": 400,
            "body": {
                "code": "invalid_data",
                "message": "The event data does not match the scenario's schema.",
                "fields": {"data.amount": ["'amount' is a required property"]},
            },
        },
    ]
}


class BatchItemOutput(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="What POST /api/v1/events would have answered.")
    body = serializers.DictField()


class EventBatchApi(APIView):
    # Values are checked item by item (EventInput), so a bad item fails alone.
    parser_classes = [BatchJSONParser]

    @extend_schema(
        request=EventInput(many=True),
        responses=inline_serializer("BatchOutput", {"results": BatchItemOutput(many=True)}),
        # drf-spectacular lists a many=True body's example itself: one event here is `[event]` there.
        examples=[
            OpenApiExample("One event", value=EXAMPLE, request_only=True),
            OpenApiExample("One taken, one refused", value=BATCH_ANSWER_EXAMPLE, response_only=True),
        ],
        summary=f"Report up to {BATCH_LIMIT} events; each is answered on its own",
    )
    def post(self, request):
        items = request.data
        if not isinstance(items, list) or not items or len(items) > BATCH_LIMIT:
            raise EventRejected(
                "invalid_batch",
                f"The body must be a list of 1 to {BATCH_LIMIT} events.",
                {"non_field_errors": [f"expected a list of 1 to {BATCH_LIMIT} events"]},
            )
        named = sum(_recipient_count(item) for item in items)
        if named > RECIPIENTS_PER_BATCH:
            raise EventRejected(
                "invalid_batch",
                f"At most {RECIPIENTS_PER_BATCH} recipients in one batch ({named} given); send fewer events at once.",
                {"non_field_errors": [f"at most {RECIPIENTS_PER_BATCH} recipients per batch"]},
            )
        return Response({"results": accept_all(request.user.client, items)})


def _recipient_count(item) -> int:
    recipients = item.get("recipients") if isinstance(item, dict) else None
    if not isinstance(recipients, dict):
        return 0
    return sum(len(entries) for entries in recipients.values() if isinstance(entries, list))


def accept_all(client: str, items: list) -> list[dict]:
    """Check each item's envelope, then accept the well-formed ones together (one transaction,
    bulk writes); every item is answered as POST /api/v1/events would answer it alone."""
    results: list[dict | None] = [None] * len(items)
    payloads, positions = [], []
    for index, item in enumerate(items):
        payload = envelope_fast(item)
        if payload is not None:
            payloads.append(payload)
            positions.append(index)
            continue
        body = EventInput(data=item)
        if body.is_valid():
            payloads.append(body.validated_data)
            positions.append(index)
        else:
            results[index] = {
                "index": index,
                "status": 400,
                "body": error_body("invalid", "The request is invalid.", flatten(body.errors)),
            }
    outcomes = events_accept(
        client=client, payloads=payloads, defer_deliveries=settings.EVENT_BATCH_DEFERRED_DELIVERIES
    )
    for index, outcome in zip(positions, outcomes, strict=True):
        if outcome.error is not None:
            err = outcome.error
            results[index] = {
                "index": index,
                "status": err.http_status,
                "body": error_body(err.error_code, err.message, err.fields),
            }
        else:
            results[index] = {"index": index, "status": 202 if outcome.created else 200, "body": outcome.answer}
    return results
