from django.urls import path

from . import apis

urlpatterns = [
    path("messages", apis.MessageListApi.as_view(), name="inbox-messages"),
    path("unread-count", apis.UnreadCountApi.as_view(), name="inbox-unread-count"),
    path("messages/<int:message_id>/read", apis.MessageReadApi.as_view(), name="inbox-message-read"),
]
