from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotifyCenterConfig(AppConfig):
    name = "notifycenter"
    verbose_name = _("API access")

    def ready(self):
        from . import schema  # noqa: F401  (registers the OpenAPI auth extensions)
