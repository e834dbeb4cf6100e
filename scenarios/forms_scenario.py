"""The scenario and rule forms of the console: help texts with examples for an operations editor
configuring a new scenario (e.g. 疫苗接种提醒). The checks are the models' (Scenario.data_problems,
Rule.policy_problems: an import makes the same), and what may only be wrong is said after a save
(scenarios.models.link_warnings)."""

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .models import Rule, Scenario


def editable_fields(model) -> list[str]:
    """Every field the admin would show (a new model field shows without touching these forms; the
    project's lint refuses `__all__`)."""
    return [f.name for f in model._meta.fields if f.editable and not f.auto_created]


SCHEMA_EXAMPLE = (
    '{"type": "object", "required": ["booking_id", "appointment_time"], "properties": '
    '{"booking_id": {"type": "string"}, "patient_name": {"type": "string"}, '
    '"appointment_time": {"type": "string", "format": "date-time"}}}'
)


class ScenarioForm(forms.ModelForm):
    class Meta:
        model = Scenario
        fields = editable_fields(Scenario)
        help_texts = {
            "code": _("The event name the hospital backend sends, e.g. vaccination.booked."),
            "subject_type": _(
                "What the event is about, e.g. booking: the data's field booking_id (or the event's own "
                "subject, when the backend sends one) links the events about one booking (a cancellation calls "
                "off that booking's reminders). Empty: events are not linked."
            ),
            # Formatted when shown, in the reader's language (a lazy string's `%` translated it at import).
            "data_schema": format_lazy(
                _("JSON Schema of the event's data: its fields and types, e.g. {}"), SCHEMA_EXAMPLE
            ),
            "sample_data": _(
                "One example of the data, matching the schema, e.g. "
                '{"booking_id": "VB001", "patient_name": "张三", "appointment_time": "2026-12-05T09:30:00+08:00"}; '
                "template previews and test sends render it."
            ),
        }


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
