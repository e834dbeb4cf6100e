from django.urls import path

from . import apis

# The same views serve the app user's own inbox (Bearer JWT) and, under a person's path, the
# hospital backend reading on their behalf (Api-Key with the scope inbox-read).
ENDPOINTS = [
    ("messages", apis.MessageListApi, "inbox-messages"),
    ("unread-count", apis.UnreadCountApi, "inbox-unread-count"),
    ("read-all", apis.ReadAllApi, "inbox-read-all"),
    ("messages/<int:message_id>", apis.MessageDeleteApi, "inbox-message"),
    ("messages/<int:message_id>/read", apis.MessageReadApi, "inbox-message-read"),
    ("messages/<int:message_id>/actions/<slug:key>", apis.ActionPressApi, "inbox-message-action"),
    ("mark", apis.BulkMarkApi, "inbox-mark"),
]


def _on_behalf(view):
    return type(f"{view.__name__}OnBehalf", (view,), {"schema": apis.OnBehalfSchema()})


urlpatterns = [path(route, view.as_view(), name=name) for route, view, name in ENDPOINTS] + [
    path(f"<str:audience>/<str:external_id>/{route}", _on_behalf(view).as_view(), name=f"{name}-for")
    for route, view, name in ENDPOINTS
]
