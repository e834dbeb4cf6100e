"""Broadcasts to large audiences, as the hospital backend sends them (Api-Key, scope `events`):
POST a list of up to 100,000 ids or a segment, then follow the progress, or cancel."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.fields import SkipField
from rest_framework.response import Response
from rest_framework.views import APIView

from channels.models import Channel
from inbox.cycles import serializer_release, validated

from .audiences import LIST_MAX
from .errors import EventRejected
from .fanout import broadcast_answer, broadcast_cancel, broadcast_create, broadcast_problems
from .models import Broadcast, BroadcastSource, BroadcastStatus, Importance, Template


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
    done = serializers.IntegerField(
        help_text="People whose message was written on at least one channel: stored in the inbox, or queued for a "
        "provider channel. Whether an SMS or push then went out is its delivery's status, not counted here."
    )
    skipped = serializers.IntegerField(help_text="Turned every chosen channel off, or have no address on any.")
    failed = serializers.IntegerField(
        help_text="People whose message could not be written (their chunk was given up after errors); "
        "not provider failures."
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


# A catalog template (fixtures/catalog.yaml), so that the example works as copied on `make run`.
EXAMPLE = {
    "name": "年度会员到期提醒 12月",
    "idempotency_key": "membership-expiring-202612",
    "template": "pt_membership_0000002",
    "channels": ["inbox"],
    "data": {"patient_name": "尊敬的会员", "plan_name": "年度会员", "expires_at": "2026-12-31T00:00:00+08:00"},
    "recipients": ["p-1", "p-2", "p-3"],
}


class BroadcastCreateApi(APIView):
    @extend_schema(
        request=BroadcastInput,
        responses={202: BroadcastOutput, 200: BroadcastOutput},
        examples=[OpenApiExample("A member-day message to a list", value=EXAMPLE, request_only=True)],
        summary="Send one message to a large audience",
        description="The same idempotency key and body again: 200 and the first broadcast; another body under a "
        "used key: 409 `idempotency_conflict`.",
    )
    def post(self, request):
        body = request.data  # the parser's own refusals (a NUL, a bad number) as they are
        try:
            values = validated(BroadcastInput(data=body))
        except ValidationError as err:
            # One answer names every field: the broadcast's own problems among the fields that passed too.
            failed = set(err.detail) if isinstance(err.detail, dict) else set()
            others = _problems_beside(body, failed=failed) if failed else {}
            raise ValidationError({**others, **err.detail}) from None
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
        if not created and not _same_request(broadcast, values):
            # As for events: a retry gets the first answer, another body under a used key is refused,
            # never answered with a broadcast the caller did not describe.
            raise EventRejected(
                "idempotency_conflict",
                "This idempotency key was already used with a different request body.",
                {"idempotency_key": ["already used with a different body"]},
                http_status=409,
            )
        broadcast.refresh_from_db()
        return Response(broadcast_answer(broadcast), status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


def _same_request(broadcast: Broadcast, values: dict) -> bool:
    """Whether `values` (a checked body) asks for the broadcast already stored under its key, as
    broadcast_create would have stored it (repeated channels and ids are one, ids as strings). An
    ended broadcast no longer keeps its list (fanout): then only how many people it named."""
    segment, listed = values.get("segment"), values.get("recipients")
    if segment is None and not isinstance(listed, list):  # not even a list: not what was stored
        return False
    ids = [] if segment is not None else list(dict.fromkeys(str(i) for i in listed))
    asked = {
        "name": values["name"][:100],
        "template": values["template"],
        "channels": list(dict.fromkeys(values["channels"])),
        "data": values["data"],
        "importance": values["importance"],
        "segment": segment is not None,
        "segment_channel": (segment or {}).get("channel", ""),
        "recipients": ids,
    }
    stored = {
        "name": broadcast.name,
        "template": broadcast.template.code,
        "channels": broadcast.channels,
        "data": broadcast.data,
        "importance": broadcast.importance,
        "segment": broadcast.source == BroadcastSource.SEGMENT,
        "segment_channel": broadcast.segment_channel,
        "recipients": broadcast.external_ids,
    }
    if broadcast.source == BroadcastSource.LIST and not broadcast.external_ids:
        asked["recipients"], stored["recipients"] = len(ids), broadcast.total
    return asked == stored


def _problems_beside(body, *, failed: set) -> dict[str, list[str]]:
    """broadcast_problems for a body some of whose fields BroadcastInput refused (`failed`): each
    other field as BroadcastInput reads it, and only the problems of those fields."""
    if not isinstance(body, dict):
        return {}
    probe = BroadcastInput()
    values = {}
    for name, field in probe.fields.items():
        if name in failed:
            continue
        try:
            values[name] = field.run_validation(field.get_value(body))
        except SkipField:  # absent, with no default
            continue
        except ValidationError:
            failed.add(name)
    serializer_release(probe)
    segment = values.get("segment")
    problems = broadcast_problems(
        template=Template.objects.filter(code=values["template"]).first() if "template" in values else None,
        channels=values.get("channels", []),
        data=values.get("data", {}),
        external_ids=values.get("recipients"),
        segment=segment is not None,
        segment_channel=(segment or {}).get("channel", ""),
        importance=values.get("importance", Importance.TRANSACTIONAL),
    )
    if "segment" in failed:  # whether it is "neither" or "both" is unknown
        failed.add("recipients")
    return {path: words for path, words in problems.items() if path.split(".")[0] not in failed}


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
