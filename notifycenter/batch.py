"""`POST /api/v1/events/batch`: many events in one request, each answered exactly as the single
endpoint would answer it. It lives here because it speaks the project's error format."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from scenarios.apis import EXAMPLE, EventInput
from scenarios.services import EventRejected, event_accept

from .errors import error_body, flatten

BATCH_LIMIT = 500


class BatchItemOutput(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="What POST /api/v1/events would have answered.")
    body = serializers.DictField()


class EventBatchApi(APIView):
    @extend_schema(
        request=EventInput(many=True),
        responses=inline_serializer("BatchOutput", {"results": BatchItemOutput(many=True)}),
        examples=[OpenApiExample("Two events", value=[EXAMPLE, {**EXAMPLE, "idempotency_key": "order-2-paid"}])],
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
        return Response(
            {"results": [{"index": i, **accept_one(request.user.client, item)} for i, item in enumerate(items)]}
        )


def accept_one(client: str, item) -> dict:
    """One item; a bad one sinks no other (each event has its own transaction)."""
    body = EventInput(data=item)
    if not body.is_valid():
        return {"status": 400, "body": error_body("invalid", "The request is invalid.", flatten(body.errors))}
    try:
        answer, created = event_accept(client=client, payload=body.validated_data)
    except EventRejected as err:
        return {"status": err.http_status, "body": error_body(err.error_code, err.message, err.fields)}
    return {"status": 202 if created else 200, "body": answer}
