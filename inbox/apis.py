"""The station inbox as the patient, doctor and pharmacist apps read it (Bearer JWT), and as the
hospital backend reads it on a person's behalf (Api-Key with the scope inbox-read, the person
named in the path).

A person is (audience, external id). Anything not theirs answers 404, never 403: nobody learns
that someone else's message exists.
"""

import base64
import hashlib
import json

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from .answers import PLATFORMS, message_answer
from .cycles import validated
from .models import Category, InboxMessage
from .selectors import inbox_counts_and_position, inbox_message_get, inbox_page
from .services import (
    inbox_action_press,
    inbox_message_delete,
    inbox_message_mark_read,
    inbox_messages_mark,
    inbox_messages_mark_read,
)

AUDIENCES = ("patient", "doctor", "pharmacist", "operations")
PLATFORM_HEADER = "X-Client-Platform"

MESSAGE_EXAMPLE = {
    "id": 1,
    "category": "consultation",
    "title": "问诊支付成功",
    "body": "您已成功支付李明医生的问诊费用50.00元，医生接诊后将第一时间通知您。",
    "link": {
        "target": "inquiry_detail",
        "route": "inquiry_detail",
        "params": {"inquiry_id": "9001"},
        "platform": "mini_program",
        "url": "/pages/inquiry/detail?inquiryId=9001",
    },
    "actions": [
        {
            "key": "view",
            "label": "查看问诊",
            "style": "primary",
            "link": {
                "target": "inquiry_detail",
                "route": "inquiry_detail",
                "params": {"inquiry_id": "9001"},
                "platform": "mini_program",
                "url": "/pages/inquiry/detail?inquiryId=9001",
            },
        }
    ],
    "template_code": "pt_inquiry_0000001",
    "created_at": "2026-11-25T10:02:35+08:00",
    "seen_at": None,
    "read_at": None,
    "archived_at": None,
    "unread": True,
    "unseen": True,
}
COUNTS_EXAMPLE = {
    "total": 3,
    "by_category": {"consultation": 2, "prescription": 1, "order": 0, "points": 0, "system": 0},
    "unseen": 1,
    "last_event_id": 17,
}

PLATFORM_PARAMETER = OpenApiParameter(
    "platform",
    str,
    enum=PLATFORMS,
    description=f"Resolve each link for this platform (or send the header {PLATFORM_HEADER}); "
    "without it every platform's form is returned.",
)


class OnBehalfSchema(AutoSchema):
    """The backend's copy of each inbox endpoint gets an operationId of its own."""

    def get_operation_id(self):
        return super().get_operation_id() + "_on_behalf"

    def get_tags(self):
        return ["inbox (backend, on behalf)"]


class IsInboxReader(permissions.BasePermission):
    """An app user reading their own inbox, or a backend with the scope inbox-read naming a person."""

    def has_permission(self, request, view):
        if "audience" in view.kwargs:
            # The same answer as every other scope check (notifycenter.permissions.scope).
            self.message, self.code = "The API key lacks the scope 'inbox-read'.", "missing_scope"
            return "inbox-read" in getattr(request.user, "scopes", ())
        return getattr(request.user, "inbox_owner", None) is not None


class InboxApi(APIView):
    permission_classes = [IsInboxReader]

    def owner(self) -> dict:
        if "audience" in self.kwargs:
            if self.kwargs["audience"] not in AUDIENCES:
                raise NotFound("No such recipient.")
            return {"audience": self.kwargs["audience"], "recipient_id": self.kwargs["external_id"]}
        audience, recipient_id = self.request.user.inbox_owner
        return {"audience": audience, "recipient_id": recipient_id}

    def get_own(self, message_id: int) -> InboxMessage:
        message = inbox_message_get(**self.owner(), message_id=message_id)
        if message is None:
            raise NotFound("No such message.")
        return message

    def platform(self) -> str | None:
        value = self.request.query_params.get("platform") or self.request.headers.get(PLATFORM_HEADER)
        if value and value not in PLATFORMS:
            raise ValidationError({"platform": [f"One of {', '.join(PLATFORMS)}."]})
        return value or None


class ActionOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    style = serializers.ChoiceField(choices=["primary", "default", "danger"])
    link = serializers.DictField()


class MessageOutput(serializers.ModelSerializer):
    """Declares the answer's shape for the schema; the values come from answers.message_answer,
    the one place that also builds the live `message.created` event."""

    unread = serializers.BooleanField()
    unseen = serializers.BooleanField()
    link = serializers.DictField()
    actions = ActionOutput(many=True)

    class Meta:
        model = InboxMessage
        fields = [
            "id",
            "category",
            "title",
            "body",
            "link",
            "actions",
            "template_code",
            "created_at",
            "seen_at",
            "read_at",
            "archived_at",
            "unread",
            "unseen",
        ]


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
        seen = serializers.BooleanField(required=False, allow_null=True, default=None)
        archived = serializers.BooleanField(
            required=False, default=False, help_text="true: the archived messages only (default: not archived)"
        )
        cursor = serializers.CharField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    class ListOutput(serializers.Serializer):
        results = MessageOutput(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    @extend_schema(
        parameters=[FilterInput, PLATFORM_PARAMETER],
        responses=ListOutput,
        examples=[OpenApiExample("A page", value={"results": [MESSAGE_EXAMPLE], "next_cursor": "MQ"})],
        summary="List an inbox, newest first (keyset cursor)",
    )
    def get(self, request, **kwargs):
        params = validated(self.FilterInput(data=request.query_params))
        before_id = _decode_cursor(params["cursor"]) if params.get("cursor") else None
        limit = params["limit"]
        rows = inbox_page(
            **self.owner(),
            limit=limit + 1,
            category=params.get("category"),
            unread=params.get("unread"),
            seen=params.get("seen"),
            archived=params["archived"],
            before_id=before_id,
        )
        next_cursor = _encode_cursor(rows[limit - 1].pk) if len(rows) > limit else None
        platform = self.platform()
        data = [message_answer(row, platform) for row in rows[:limit]]  # as MessageOutput declares
        return Response({"results": data, "next_cursor": next_cursor})


class UnreadCountApi(InboxApi):
    class CountOutput(serializers.Serializer):
        total = serializers.IntegerField(help_text="unread, not archived")
        by_category = serializers.DictField(child=serializers.IntegerField())
        unseen = serializers.IntegerField(help_text="never shown in a list, not archived")
        last_event_id = serializers.IntegerField(
            help_text="the person's last live event: read this, then the list, then connect to the live inbox with "
            "it as last_event_id, and no change is missed (skip a message.created already listed)"
        )

    @extend_schema(
        responses={200: CountOutput, 304: None},
        examples=[OpenApiExample("Three unread", value=COUNTS_EXAMPLE)],
        summary="Unread (total and per category) and unseen counts; 304 to a matching If-None-Match",
    )
    def get(self, request, **kwargs):
        body = inbox_counts_and_position(**self.owner())
        etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16] + '"'
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            response = Response(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = Response(body)
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response


class MessageReadApi(InboxApi):
    @extend_schema(
        request=None,
        parameters=[PLATFORM_PARAMETER],
        responses=MessageOutput,
        examples=[
            OpenApiExample(
                "Read",
                value={
                    **MESSAGE_EXAMPLE,
                    "seen_at": "2026-11-25T10:05:00+08:00",
                    "read_at": "2026-11-25T10:05:00+08:00",
                    "unread": False,
                    "unseen": False,
                },
            )
        ],
        summary="Mark one message read",
    )
    def post(self, request, message_id: int, **kwargs):
        message = inbox_message_mark_read(message=self.get_own(message_id))
        return Response(message_answer(message, self.platform()))


class ReadAllApi(InboxApi):
    class ReadAllInput(serializers.Serializer):
        category = serializers.ChoiceField(choices=Category.choices, required=False)

    @extend_schema(
        request=ReadAllInput,
        responses=inline_serializer("ReadAllOutput", {"marked": serializers.IntegerField()}),
        examples=[OpenApiExample("Only consultations", value={"category": "consultation"}, request_only=True)],
        summary="Mark every unread message read (optionally one category)",
    )
    def post(self, request, **kwargs):
        params = validated(self.ReadAllInput(data=request.data or {}))
        marked = inbox_messages_mark_read(**self.owner(), category=params.get("category"))
        return Response({"marked": marked})


class MessageDeleteApi(InboxApi):
    @extend_schema(responses={204: None}, summary="Delete one message (hidden from lists and counts)")
    def delete(self, request, message_id: int, **kwargs):
        inbox_message_delete(message=self.get_own(message_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BulkMarkApi(InboxApi):
    class BulkInput(serializers.Serializer):
        action = serializers.ChoiceField(choices=["seen", "read", "archive"])
        ids = serializers.ListField(
            child=serializers.IntegerField(min_value=1), required=False, min_length=1, max_length=500
        )
        category = serializers.ChoiceField(choices=Category.choices, required=False)

    @extend_schema(
        request=BulkInput,
        responses=inline_serializer("BulkMarkOutput", {"marked": serializers.IntegerField()}),
        examples=[
            OpenApiExample("The list was shown", value={"action": "seen", "ids": [41, 42, 43]}, request_only=True),
            OpenApiExample("Archive a category", value={"action": "archive", "category": "order"}, request_only=True),
        ],
        summary="Mark messages seen, read or archived: by ids, by category, or all",
    )
    def post(self, request, **kwargs):
        params = validated(self.BulkInput(data=request.data))
        marked = inbox_messages_mark(
            **self.owner(), action=params["action"], ids=params.get("ids"), category=params.get("category")
        )
        return Response({"marked": marked})


class ActionPressApi(InboxApi):
    @extend_schema(
        request=None,
        parameters=[PLATFORM_PARAMETER],
        responses=MessageOutput,
        summary="Report that a button of a message was pressed (recorded; the message is marked read)",
    )
    def post(self, request, message_id: int, key: str, **kwargs):
        message = self.get_own(message_id)
        if key not in {action.get("key") for action in message.actions or ()}:
            raise NotFound("The message has no such button.")
        inbox_action_press(message=message, key=key, platform=self.platform() or "")
        message.refresh_from_db()
        return Response(message_answer(message, self.platform()))
