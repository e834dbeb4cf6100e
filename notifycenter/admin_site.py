"""The console's admin site: an operations home page as its index, apps in the order operations
staff use them, the engineers' tables (Celery beat, API keys, users) last."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

# Apps in the order of a working day; anything unlisted comes after these, engineers' last.
APP_ORDER = ["scenarios", "channels", "inbox"]
ENGINEER_APPS = ["notifycenter", "auth", "django_celery_beat"]
MODEL_ORDER = {
    "scenarios": [
        "Scenario",
        "Template",
        "Rule",
        "ChannelBinding",
        "LinkTarget",
        "Event",
        "Message",
        "UpcomingReminder",
        "FollowUpPlan",
        "PlanEnrollment",
        "RecurringBroadcast",
        "TestRecipient",
    ],
    "channels": ["Delivery", "ChannelAccount", "Recipient", "OtpCode"],
}


def _app_rank(app_label: str) -> tuple[int, int]:
    if app_label in APP_ORDER:
        return (0, APP_ORDER.index(app_label))
    if app_label in ENGINEER_APPS:
        return (2, ENGINEER_APPS.index(app_label))
    return (1, 0)


class OpsAdminSite(admin.AdminSite):
    site_header = _("notifycenter operations console")
    site_title = _("notifycenter")
    index_title = _("Operations home")
    # The home page lists every table; the side menu would take a fifth of a 1280 px screen from lists.
    enable_nav_sidebar = False
    index_template = "admin/ops_index.html"
    # Django's "view site" link: the API documentation, the one page this server has besides the console.
    site_url = "/api/docs/"

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        apps.sort(key=lambda app: _app_rank(app["app_label"]))
        for app in apps:
            order = MODEL_ORDER.get(app["app_label"], [])
            app["models"].sort(
                key=lambda m: (order.index(m["object_name"]) if m["object_name"] in order else len(order), m["name"])
            )
            app["engineers"] = app["app_label"] in ENGINEER_APPS
        return apps

    def index(self, request, extra_context=None):
        from scenarios.dashboard import (
            cells_needing_attention,
            channels_today,
            deliveries_needing_attention,
            reminders_next_hour,
        )

        context = {}
        user = request.user
        if user.has_perm("channels.view_delivery"):
            days = channels_today()
            busiest = max((d.total for d in days), default=0) or 1
            stuck_count, stuck = deliveries_needing_attention()
            context.update(
                channels_today=[(d, _widths(d, busiest)) for d in days],
                stuck_count=stuck_count,
                stuck=stuck,
            )
        if user.has_perm("scenarios.view_scenario"):
            context["attention"] = cells_needing_attention()
        if user.has_perm("scenarios.view_upcomingreminder"):
            context["reminders_count"], context["reminders"] = reminders_next_hour()
        context["dashboard"] = bool(context)
        return super().index(request, {**context, **(extra_context or {})})


def _widths(day, busiest: int) -> dict[str, float]:
    """Each part of a channel's bar as a percent of the busiest channel's total."""
    return {k: getattr(day, k) * 100 / busiest for k in ("good", "bad", "skipped", "waiting")}
