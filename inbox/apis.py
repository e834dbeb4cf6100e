"""The station inbox as the patient, doctor and pharmacist apps read it (Bearer JWT)."""

import base64

from django.db.models import Count
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import permissions, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Category, InboxMessage
from .selectors import inbox_message_get, inbox_message_list
from .services import inbox_message_mark_read

MESSAGE_EXAMPLE = {
    "id": 1,
    "category": "consultation",
    "title": "问诊支付成功",
    "body": "您已成功支付李明医生的问诊费用50.00元，医生接诊后将第一时间通知您。",
    "link": {
        "target": "inquiry_detail",
        "route": "inquiry_detail",
        "params": {"inquiry_id": "9001"},
        "mini_program": "/pages/inquiry/detail?inquiryId=9001",
    },
    "template_code": "pt_inquiry_0000001",
    "created_at": "2026-11-25T10:02:35+08:00",
    "read_at": None,
    "unread": True,
}


class IsInboxUser(permissions.BasePermission):
    """The caller is an app user with an inbox of their own (set by the project's JWT auth)."""

    def has_permission(self, request, view):
        return getattr(request.user, "inbox_owner", None) is not None


class InboxApi(APIView):
    permission_classes = [IsInboxUser]

    def owner(self):
        audience, recipient_id = self.request.user.inbox_owner
        return {"audience": audience, "recipient_id": recipient_id}

    def get_own(self, message_id: int) -> InboxMessage:
        message = inbox_message_get(**self.owner(), message_id=message_id)
        if message is None:
            raise NotFound("No such message.")
        return message


class MessageOutput(serializers.ModelSerializer):
    unread = serializers.SerializerMethodField()

    class Meta:
        model = InboxMessage
        fields = ["id", "category", "title", "body", "link", "template_code", "created_at", "read_at", "unread"]

    def get_unread(self, obj) -> bool:
        return obj.read_at is None


def _encode_cursor(message_id: int) -> str:
    return base64.urlsafe_b64encode(str(message_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValidationError({"cursor": ["The cursor is malformed."]}) from err


class MessageListApi(InboxApi):
    class FilterInput(serializers.Serializer):
        category = serializers.ChoiceField(choices=Category.choices, required=False)
        unread = serializers.BooleanField(required=False, allow_null=True, default=None)
        cursor = serializers.CharField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    class ListOutput(serializers.Serializer):
        results = MessageOutput(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    @extend_schema(
        parameters=[FilterInput],
        responses=ListOutput,
        examples=[OpenApiExample("A page", value={"results": [MESSAGE_EXAMPLE], "next_cursor": "MQ"})],
        summary="List my inbox, newest first",
    )
    def get(self, request):
        filters = self.FilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        before_id = _decode_cursor(params["cursor"]) if params.get("cursor") else None
        limit = params["limit"]
        rows = list(
            inbox_message_list(
                **self.owner(), category=params.get("category"), unread=params.get("unread"), before_id=before_id
            )[: limit + 1]
        )
        next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
        return Response({"results": MessageOutput(rows[:limit], many=True).data, "next_cursor": next_cursor})


class UnreadCountApi(InboxApi):
    class CountOutput(serializers.Serializer):
        total = serializers.IntegerField()
        by_category = serializers.DictField(child=serializers.IntegerField())

    @extend_schema(
        responses=CountOutput,
        examples=[
            OpenApiExample(
                "Three unread",
                value={
                    "total": 3,
                    "by_category": {"consultation": 2, "prescription": 1, "order": 0, "points": 0, "system": 0},
                },
            )
        ],
        summary="My unread count, in total and per category",
    )
    def get(self, request):
        counts = inbox_message_list(**self.owner(), unread=True).order_by().values("category").annotate(n=Count("id"))
        by_category = {c: 0 for c in Category.values}
        for row in counts:
            by_category[row["category"]] = row["n"]
        return Response({"total": sum(by_category.values()), "by_category": by_category})


class MessageReadApi(InboxApi):
    @extend_schema(
        request=None,
        responses=MessageOutput,
        examples=[
            OpenApiExample("Read", value={**MESSAGE_EXAMPLE, "read_at": "2026-11-25T10:05:00+08:00", "unread": False})
        ],
        summary="Mark one of my messages read",
    )
    def post(self, request, message_id: int):
        message = inbox_message_mark_read(message=self.get_own(message_id))
        return Response(MessageOutput(message).data)
