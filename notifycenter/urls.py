from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated

from channels import apis as channel_apis
from channels.receipts.views import callback
from scenarios import apis as scenario_apis
from scenarios import apis_broadcasts as broadcast_apis

from .apis import WebhookDetailApi, WebhookListApi
from .auth import ApiKeyAuthentication
from .batch import EventBatchApi
from .errors import handler404 as api_404
from .health import healthz, readyz
from .metrics import metrics
from .permissions import scope
from .redirects import follow

events = [IsAuthenticated, scope("events")]
recipients = [IsAuthenticated, scope("recipients")]
otp = [IsAuthenticated, scope("otp")]
webhooks = [IsAuthenticated, scope("webhooks")]
backend_only = {"authentication_classes": [ApiKeyAuthentication]}

api_v1 = [
    path("events", scenario_apis.EventCreateApi.as_view(permission_classes=events, **backend_only), name="events"),
    path("events/batch", EventBatchApi.as_view(permission_classes=events, **backend_only), name="events-batch"),
    path(
        "events/<int:event_id>",
        scenario_apis.EventDetailApi.as_view(permission_classes=events, **backend_only),
        name="event",
    ),
    path(
        "broadcasts",
        broadcast_apis.BroadcastCreateApi.as_view(permission_classes=events, **backend_only),
        name="broadcasts",
    ),
    path(
        "broadcasts/<int:broadcast_id>",
        broadcast_apis.BroadcastDetailApi.as_view(permission_classes=events, **backend_only),
        name="broadcast",
    ),
    path(
        "broadcasts/<int:broadcast_id>/cancel",
        broadcast_apis.BroadcastCancelApi.as_view(permission_classes=events, **backend_only),
        name="broadcast-cancel",
    ),
    path(
        "recipients/<str:audience>/<str:external_id>",
        channel_apis.RecipientPutApi.as_view(permission_classes=recipients, **backend_only),
        name="recipient",
    ),
    path(
        "recipients/<str:audience>/<str:external_id>/subscriptions",
        channel_apis.SubscriptionsApi.as_view(permission_classes=recipients, **backend_only),
        name="recipient-subscriptions",
    ),
    path(
        "recipients/<str:audience>/<str:external_id>/preferences",
        scenario_apis.PreferencesApi.as_view(authentication_classes=[ApiKeyAuthentication]),
        name="recipient-preferences",
    ),
    path("otp", scenario_apis.OtpRequestApi.as_view(permission_classes=otp, **backend_only), name="otp"),
    path("otp/verify", channel_apis.OtpVerifyApi.as_view(permission_classes=otp, **backend_only), name="otp-verify"),
    # Before the inbox's own routes: preferences read the catalog's critical rules (scenarios).
    path("inbox/preferences", scenario_apis.PreferencesApi.as_view(), name="inbox-preferences"),
    path("inbox/", include("inbox.urls")),
    path("webhooks", WebhookListApi.as_view(permission_classes=webhooks, **backend_only), name="webhooks"),
    path(
        "webhooks/<int:webhook_id>",
        WebhookDetailApi.as_view(permission_classes=webhooks, **backend_only),
        name="webhook",
    ),
    # Provider receipts in: each authenticated as its provider documents (channels/receipts/).
    path("callbacks/<str:provider>/<int:account_id>", callback, name="callback"),
    # Last: any other path under the API answers the API's JSON 404, with DEBUG on too (make run),
    # where Django would show its HTML page; whatever the method (no CSRF page for a POST).
    re_path(r"^", csrf_exempt(lambda request: api_404(request)), name="api-not-found"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="docs",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="redoc",
    ),
    # Browsers ask for it at every console page: no icon, and no "Not Found" line in the log each time.
    path("favicon.ico", lambda request: HttpResponse(status=204), name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("r/<str:token>", follow, name="click"),  # a tracked link (channels/clicks.py)
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the admin's language switch
    path("admin/", admin.site.urls),
]


handler404 = "notifycenter.errors.handler404"
handler500 = "notifycenter.errors.handler500"
