from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChannelsConfig(AppConfig):
    # Not the PyPI package "Django Channels": never install that here (docs/architecture.md).
    name = "channels"
    label = "channels"
    verbose_name = _("Channels and deliveries")
