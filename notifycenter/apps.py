from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


class NotifyCenterConfig(AppConfig):
    name = "notifycenter"
    verbose_name = _("API access")

    def ready(self):
        from channels.timeline import status_changes_committed

        from . import schema  # noqa: F401  (registers the OpenAPI auth extensions)
        from .webhooks import kick

        # Status changes committed below: publish them as webhooks soon (the beat scan is the net).
        status_changes_committed.connect(lambda **kw: kick(), weak=False, dispatch_uid="webhooks-kick")


class OpsAdminConfig(AdminConfig):
    """django.contrib.admin with our site (notifycenter/admin_site.py) as the default one."""

    default_site = "notifycenter.admin_site.OpsAdminSite"
