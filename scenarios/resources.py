"""Import and export of the configuration (staging → production) with django-import-export.

Rows are matched by their codes, never by database ids, so a file exported on one system imports
into another: a scenario by its code, a rule by scenario and rule code, a template by its code, a
binding by template and channel, a link target by its code. JSON fields travel as JSON text. A
binding's channel account travels by name (accounts and their secrets are not exported). Import
in the order of RESOURCES: link targets, scenarios, templates, bindings, rules.
"""

import json

from django.utils.translation import gettext
from import_export import fields, resources, widgets

from channels.models import ChannelAccount

from .models import ChannelBinding, LinkTarget, Rule, Scenario, Template


class JSONWidget(widgets.Widget):
    """JSON text both ways. import-export's own JSONWidget exports {} and [] as nothing (which
    the non-null JSON fields then refuse) and retries bad JSON with quotes swapped; this one keeps
    every value as it is and lets a bad cell be a row error."""

    def clean(self, value, row=None, **kwargs):
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            return value  # JSON and YAML files carry the structure itself
        try:
            return json.loads(value)
        except ValueError as err:
            raise ValueError(gettext("Not JSON: %(error)s") % {"error": err}) from err

    def render(self, value, obj=None, **kwargs):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)


class CodeWidget(widgets.ForeignKeyWidget):
    """A row named by its code (or name). One the system does not hold is the cell's error, in
    the reader's words and naming the value (import-export reported the bare DoesNotExist,
    "LinkTarget matching query does not exist.", for the whole row)."""

    def clean(self, value, row=None, **kwargs):
        try:
            return super().clean(value, row, **kwargs)
        except self.model.DoesNotExist as err:
            raise ValueError(
                gettext("No %(model)s %(value)s here: import it first, or correct the value.")
                % {"model": self.model._meta.verbose_name, "value": value}
            ) from err


class ConfigResource(resources.ModelResource):
    """Shared: JSON fields as JSON text; unchanged rows reported as skipped, not rewritten."""

    class Meta:
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True  # the model's own validation, row by row

    @classmethod
    def widget_from_django_field(cls, f, default=widgets.Widget):
        if f.get_internal_type() == "JSONField":
            return JSONWidget
        return super().widget_from_django_field(f, default)


class LinkTargetResource(ConfigResource):
    class Meta(ConfigResource.Meta):
        model = LinkTarget
        import_id_fields = ["code"]
        exclude = ["id", "created_at", "updated_at"]


class ScenarioResource(ConfigResource):
    class Meta(ConfigResource.Meta):
        model = Scenario
        import_id_fields = ["code"]
        exclude = ["id", "created_at", "updated_at"]


class TemplateResource(ConfigResource):
    link = fields.Field("link", "link", CodeWidget(LinkTarget, "code"))

    class Meta(ConfigResource.Meta):
        model = Template
        import_id_fields = ["code"]
        exclude = ["id", "created_at", "updated_at"]


class ChannelBindingResource(ConfigResource):
    template = fields.Field("template", "template", CodeWidget(Template, "code"))
    account = fields.Field("account", "account", CodeWidget(ChannelAccount, "name"))

    class Meta(ConfigResource.Meta):
        model = ChannelBinding
        import_id_fields = ["template", "channel"]
        exclude = ["id", "created_at", "updated_at"]


class RuleResource(ConfigResource):
    scenario = fields.Field("scenario", "scenario", CodeWidget(Scenario, "code"))
    template = fields.Field("template", "template", CodeWidget(Template, "code"))
    collapse_template = fields.Field("collapse_template", "collapse_template", CodeWidget(Template, "code"))

    class Meta(ConfigResource.Meta):
        model = Rule
        import_id_fields = ["scenario", "code"]
        exclude = ["id", "created_at", "updated_at"]


RESOURCES = [LinkTargetResource, ScenarioResource, TemplateResource, ChannelBindingResource, RuleResource]
