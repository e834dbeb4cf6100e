"""Status webhooks, as the hospital backend registers them (Api-Key, scope `webhooks`)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from inbox.cycles import validated

from .models import WEBHOOK_EVENTS, WebhookEndpoint, url_without_credentials
from .webhooks import webhook_endpoint_create


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500, validators=[url_without_credentials])
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


class WebhookListApi(APIView):
    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookInput,
        responses={201: WebhookOutput},
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
