"""Broadcasts to large audiences, as the hospital backend sends them (Api-Key, scope `events`):
POST a list of up to 100,000 ids or a segment, then follow the progress, or cancel."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from channels.models import Channel
from inbox.cycles import validated

from .audiences import LIST_MAX
from .errors import EventRejected
from .fanout import broadcast_answer, broadcast_cancel, broadcast_create
from .models import Broadcast, BroadcastStatus, Importance, Template


class BroadcastInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    idempotency_key = serializers.CharField(max_length=128, min_length=1)
    template = serializers.CharField(max_length=64, help_text="A template code; its audience is the broadcast's.")
    channels = serializers.ListField(
        child=serializers.CharField(max_length=32),
        help_text=f"Of {', '.join(Channel.values)}; inbox, or channels the template has a binding for.",
    )
    data = serializers.DictField(required=False, default=dict, help_text="What the template renders with.")
    importance = serializers.CharField(required=False, default=Importance.TRANSACTIONAL, help_text="As a rule's.")
    recipients = serializers.JSONField(
        required=False,
        help_text=f"External ids, at most {LIST_MAX:,} (one per person; repeats are one person). Or `segment`.",
    )
    segment = inline_serializer(
        "Segment",
        {"channel": serializers.CharField(required=False, allow_blank=True, default="")},
        required=False,
        help_text="Everyone of the template's audience in the directory; `channel`: only those with an address there.",
    )


class BroadcastOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    template = serializers.CharField()
    audience = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField(help_text=f"One of {', '.join(BroadcastStatus.values)}.")
    total = serializers.IntegerField()
    done = serializers.IntegerField(help_text="People reached on at least one channel.")
    skipped = serializers.IntegerField(help_text="Turned every chosen channel off, or have no address on any.")
    failed = serializers.IntegerField(help_text="In a chunk given up after errors.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


EXAMPLE = {
    "name": "会员日 11-30",
    "idempotency_key": "member-day-20261130",
    "template": "pt_member_day",
    "channels": ["inbox"],
    "data": {"day": "11-30"},
    "recipients": ["p-1", "p-2", "p-3"],
}


class BroadcastCreateApi(APIView):
    @extend_schema(
        request=BroadcastInput,
        responses={202: BroadcastOutput, 200: BroadcastOutput},
        examples=[OpenApiExample("A member-day message to a list", value=EXAMPLE, request_only=True)],
        summary="Send one message to a large audience",
    )
    def post(self, request):
        values = validated(BroadcastInput(data=request.data))
        segment = values.get("segment")
        broadcast, created = broadcast_create(
            name=values["name"],
            template=Template.objects.filter(code=values["template"]).first(),
            channels=values["channels"],
            data=values["data"],
            importance=values["importance"],
            external_ids=values.get("recipients"),
            segment=segment is not None,
            segment_channel=(segment or {}).get("channel", ""),
            created_by=f"api:{request.user.client}",
            client=request.user.client,
            idempotency_key=values["idempotency_key"],
        )
        broadcast.refresh_from_db()
        return Response(broadcast_answer(broadcast), status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


def _own(request, broadcast_id: int) -> Broadcast:
    broadcast = Broadcast.objects.select_related("template").filter(pk=broadcast_id, client=request.user.client).first()
    if broadcast is None:
        raise NotFound("No such broadcast.")
    return broadcast


class BroadcastDetailApi(APIView):
    @extend_schema(responses=BroadcastOutput, summary="A broadcast's progress")
    def get(self, request, broadcast_id: int):
        return Response(broadcast_answer(_own(request, broadcast_id)))


class BroadcastCancelApi(APIView):
    @extend_schema(request=None, responses=BroadcastOutput, summary="Stop a broadcast (within one chunk)")
    def post(self, request, broadcast_id: int):
        broadcast = _own(request, broadcast_id)
        if not broadcast_cancel(broadcast_id=broadcast.pk):
            raise EventRejected("broadcast_finished", "The broadcast has already ended.", http_status=409)
        broadcast.refresh_from_db()
        return Response(broadcast_answer(broadcast))
