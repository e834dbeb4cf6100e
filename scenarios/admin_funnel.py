"""The funnel on a scenario's page (scenarios/funnel.py), as a read-only field."""

from django.contrib import admin
from django.template.loader import render_to_string
from django.utils.translation import gettext_lazy as _

from .funnel import scenario_funnels


class FunnelMixin:
    """Adds "funnel" to a scenario's change page."""

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "funnel"]

    @admin.display(description=_("funnel"))
    def funnel(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        return render_to_string("admin/scenarios/funnel.html", {"funnels": scenario_funnels(scenario_id=obj.pk)})
