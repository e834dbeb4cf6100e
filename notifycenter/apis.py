"""Status webhooks, as the hospital backend registers them (Api-Key, scope `webhooks`)."""

from drf_spectacular.utils import OpenApiCallback, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from inbox.cycles import validated

from .models import WEBHOOK_EVENTS, WebhookEndpoint, url_not_internal, url_without_credentials
from .webhooks import webhook_endpoint_create


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500, validators=[url_without_credentials, url_not_internal])
    secret = serializers.CharField(min_length=16, max_length=200, write_only=True)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), min_length=1, max_length=len(WEBHOOK_EVENTS)
    )


class WebhookOutput(serializers.Serializer):
    """The secret is never shown again."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.URLField(read_only=True)
    events = serializers.ListField(child=serializers.CharField(), read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class WebhookEventData(serializers.Serializer):
    delivery_id = serializers.IntegerField(required=False, help_text="`delivery.*` only, as are the fields below.")
    event_id = serializers.IntegerField(allow_null=True, help_text="The event the message came from.")
    message_id = serializers.IntegerField(allow_null=True)
    channel = serializers.CharField(required=False)
    template_code = serializers.CharField(required=False)
    status = serializers.CharField(required=False, help_text="The status the delivery reached.")
    code = serializers.CharField(required=False, allow_blank=True, help_text="The provider's code, if it gave one.")
    detail = serializers.CharField(required=False, allow_blank=True, help_text="The provider's words, if any.")


class WebhookEvent(serializers.Serializer):
    """One status webhook, as the center POSTs it to a registered endpoint."""

    id = serializers.CharField(
        help_text="`evt_<n>` or `msg_<id>_settled`, also in the Notifycenter-Id header; a retry or a replay "
        "repeats it: de-duplicate by it."
    )
    # A plain string: one choice set (EventsEnum, WebhookInput's) has one name in the document.
    type = serializers.CharField(help_text=f"One of {', '.join(WEBHOOK_EVENTS)}.")
    created_at = serializers.DateTimeField()
    data = WebhookEventData()


WEBHOOK_CALLBACK = OpenApiCallback(
    "status",
    "{$request.body#/url}",
    extend_schema(
        request=WebhookEvent,
        responses={204: OpenApiResponse(description="Any 2xx takes it.")},
        summary="A status webhook, as your endpoint receives it",
        description="Headers: `Content-Type: application/json`, `Notifycenter-Id` (the event id), "
        "`Notifycenter-Timestamp` (unix seconds), `Notifycenter-Signature: v1=<hex HMAC-SHA256 with the "
        "endpoint's secret over `<timestamp>.<raw body>`>`. Verify the signature, refuse timestamps more than a "
        "few minutes old, de-duplicate by the id. An answer other than 2xx, or none within 10 s, is tried "
        "again after 10 s, 30 s, 1 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h and 12 h, then given up. "
        "A delivery's events come in the order they happened.",
    ),
)


class WebhookListApi(APIView):
    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookInput,
        responses={201: WebhookOutput},
        callbacks=[WEBHOOK_CALLBACK],
        summary="Register a status webhook endpoint (signed POSTs; see README).",
    )
    def post(self, request):
        endpoint = webhook_endpoint_create(client=request.user.client, **validated(WebhookInput(data=request.data)))
        return Response(WebhookOutput(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="webhooks_list", responses={200: WebhookOutput(many=True)})
    def get(self, request):
        endpoints = WebhookEndpoint.objects.filter(client=request.user.client, is_active=True).order_by("id")
        return Response(WebhookOutput(endpoints, many=True).data)


class WebhookDetailApi(APIView):
    @extend_schema(operation_id="webhooks_delete", responses={204: None})
    def delete(self, request, webhook_id: int):
        removed = WebhookEndpoint.objects.filter(pk=webhook_id, client=request.user.client, is_active=True).update(
            is_active=False
        )
        if not removed:
            raise NotFound("No such webhook endpoint.")
        return Response(status=status.HTTP_204_NO_CONTENT)
