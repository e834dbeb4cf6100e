from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _


class NotifyCenterConfig(AppConfig):
    name = "notifycenter"
    verbose_name = _("API access")

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from channels.timeline import status_changes_committed

        from . import schema  # noqa: F401  (registers the OpenAPI auth extensions)
        from .auth import api_keys_forget
        from .models import ApiKey
        from .webhooks import kick

        # A changed or deleted key is read again by the next request (auth keeps keys 2 s).
        post_save.connect(api_keys_forget, sender=ApiKey, dispatch_uid="api-keys-forget-save")
        post_delete.connect(api_keys_forget, sender=ApiKey, dispatch_uid="api-keys-forget-delete")

        # Status changes committed below: publish them as webhooks soon (the beat scan is the net).
        status_changes_committed.connect(lambda **kw: kick(), weak=False, dispatch_uid="webhooks-kick")


class OpsAdminConfig(AdminConfig):
    """django.contrib.admin with our site (notifycenter/admin_site.py) as the default one."""

    default_site = "notifycenter.admin_site.OpsAdminSite"
