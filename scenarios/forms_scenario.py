"""The scenario and rule forms of the console: what an operations editor configuring a new
scenario (e.g. 疫苗接种提醒) would otherwise save without a word and only learn about from the
backend's refused events or reminders that are never called off.

- A scenario's sample data is checked against its data schema (the template previews and test
  sends render it), and its subject type must name a data field `<subject type>_id`: the event's
  subject is read from it (scenarios/intake.py), and without one no event can cancel or move
  another's reminders.
- A rule's anchor field must be a field of the scenario's data (else every event of the scenario
  is refused 400), and *cancelled by* / *moved by* must name existing events about the same
  subject (else the reminders are never cancelled or moved).
"""

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import Rule, Scenario
from .schemas import compiled, schema_problem

SCHEMA_EXAMPLE = (
    '{"type": "object", "required": ["booking_id", "appointment_time"], "properties": '
    '{"booking_id": {"type": "string"}, "patient_name": {"type": "string"}, '
    '"appointment_time": {"type": "string", "format": "date-time"}}}'
)


def editable_fields(model) -> list[str]:
    """Every field the admin would show (a new model field shows without touching these forms)."""
    return [f.name for f in model._meta.fields if f.editable and not f.auto_created]


def schema_fields(scenario: Scenario | None) -> list[str] | None:
    """The data fields the scenario's schema names, or None when it names none (no schema, or
    one without `properties`: nothing to check against)."""
    properties = (scenario.data_schema or {}).get("properties") if scenario is not None else None
    if not isinstance(properties, dict) or not properties:
        return None
    return list(properties)


class ScenarioForm(forms.ModelForm):
    class Meta:
        model = Scenario
        fields = editable_fields(Scenario)
        help_texts = {
            "code": _("The event name the hospital backend sends, e.g. vaccination.booked."),
            "subject_type": _(
                "What the event is about, e.g. booking: the data must then have the field booking_id, "
                "which links the events about one booking (a cancellation calls off that booking's reminders). "
                "Empty: events are not linked."
            ),
            "data_schema": _("JSON Schema of the event's data: its fields and types, e.g. %(example)s")
            % {"example": SCHEMA_EXAMPLE},
            "sample_data": _(
                "One example of the data, matching the schema, e.g. "
                '{"booking_id": "VB001", "patient_name": "张三", "appointment_time": "2026-12-05T09:30:00+08:00"}; '
                "template previews and test sends render it."
            ),
        }

    def clean(self):
        cleaned = super().clean()
        schema = cleaned.get("data_schema")
        sample = cleaned.get("sample_data")
        if not schema or schema_problem(schema) is not None:
            return cleaned  # no schema, or the model's own check says what is wrong with it
        if sample:
            problems = [
                f"{error.json_path.replace('$', 'data', 1)}: {error.message}"
                for error in compiled(schema).iter_errors(sample)
            ]
            if problems:
                self.add_error(
                    "sample_data",
                    gettext("The sample data does not match the data schema: %(problems)s")
                    % {"problems": "; ".join(problems[:5])},
                )
        subject = (cleaned.get("subject_type") or "").strip()
        fields = schema_fields(Scenario(data_schema=schema))
        if subject and fields is not None and f"{subject}_id" not in fields:
            ids = [f[: -len("_id")] for f in fields if f.endswith("_id")]
            self.add_error(
                "subject_type",
                gettext(
                    "The data has no field %(field)s, so no event of this scenario is linked to the others "
                    "(a cancellation would call off nothing). Use the name before _id of one of its id fields: "
                    "%(choices)s."
                )
                % {"field": f"{subject}_id", "choices": ", ".join(ids) or "—"},
            )
        return cleaned


class RuleForm(forms.ModelForm):
    """Used on the scenario page (inline) and on the rule's own page."""

    class Meta:
        model = Rule
        fields = editable_fields(Rule)
        help_texts = {
            "anchor_field": _(
                "A date-time field of the scenario's data (e.g. appointment_time) to fire at; empty: at once."
            ),
            "offset_minutes": _("Minutes from the anchor: −1440 is one day before, −30 half an hour before."),
            "cancel_on": _(
                "Event names about the same subject that call the pending reminders off, "
                'e.g. ["vaccination.cancelled"].'
            ),
            "reschedule_on": _(
                "Event names about the same subject whose data carries a new anchor time, "
                'e.g. ["vaccination.rescheduled"].'
            ),
            "default_recipients": _(
                'External ids told when the event names none for this audience, e.g. ["ops-duty"] for operations.'
            ),
        }

    def scenario(self) -> Scenario | None:
        scenario = self.cleaned_data.get("scenario") or getattr(self.instance, "scenario", None)
        try:
            return scenario if scenario is not None else self.instance.scenario
        except Scenario.DoesNotExist:
            return None

    def clean(self):
        cleaned = super().clean()
        scenario = self.scenario()
        anchor = (cleaned.get("anchor_field") or "").strip()
        fields = schema_fields(scenario)
        if anchor and fields is not None and anchor not in fields:
            self.add_error(
                "anchor_field",
                gettext(
                    "%(name)s is not a field of the scenario's data, so every event of the scenario would be "
                    "refused; one of: %(names)s."
                )
                % {"name": anchor, "names": ", ".join(fields)},
            )
        template = cleaned.get("template")
        audience = cleaned.get("audience")
        if template is not None and audience and template.audience != audience:
            self.add_error(
                "template",
                gettext("%(code)s is written for %(its)s; this rule tells %(ours)s.")
                % {
                    "code": template.code,
                    "its": template.get_audience_display(),
                    "ours": dict(self.fields["audience"].choices).get(audience, audience),
                },
            )
        for name in ("cancel_on", "reschedule_on"):
            self._check_events(name, cleaned.get(name), scenario, anchor)
        return cleaned

    def _check_events(self, name: str, codes, scenario: Scenario | None, anchor: str) -> None:
        if not codes:
            return
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            self.add_error(name, gettext('A list of event names, e.g. ["vaccination.cancelled"].'))
            return
        if not anchor:
            self.add_error(name, gettext("Only a reminder (a rule with an anchor field) can be called off or moved."))
        known = {s.code: s for s in Scenario.objects.filter(code__in=codes)}
        unknown = [c for c in codes if c not in known]
        if unknown:
            self.add_error(
                name,
                gettext("No scenario has the event name %(names)s: add that scenario first, or correct the name.")
                % {"names": ", ".join(unknown)},
            )
        subject = scenario.subject_type if scenario is not None else ""
        if scenario is not None and not subject:
            self.add_error(
                name,
                gettext(
                    "The scenario has no subject type, so no event is linked to its reminders: set its subject type."
                ),
            )
            return
        other = [c for c, s in known.items() if s.subject_type != subject]
        if other:
            self.add_error(
                name,
                gettext("%(names)s is about another subject type than %(subject)s: its events never match.")
                % {"names": ", ".join(other), "subject": subject},
            )
