"""The console's history pages of configuration (历史): simple_history's, with values worded as
the console words them elsewhere, and with the changes to the rows edited on the same page.

A scenario's rules, a template's channel bindings and a plan's steps are edited inline on their
parent's page, and each keeps its own history; the parent's history page showed only the
parent's own fields, so a changed delay or a deleted channel binding left no trace where staff
look. `history_children` lists those rows' histories under the parent's, newest first."""

from collections import defaultdict

from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin
from simple_history.models import DeletedObject
from simple_history.template_utils import HistoricalRecordContextHelper


class ConsoleHistoryValues(HistoricalRecordContextHelper):
    """A history page's old and new values as the console shows them elsewhere: a choice by its
    label, yes/no, and "—" for nothing (simple_history printed None, and an empty reference as
    "Deleted <model> (pk=None)")."""

    def prepare_delta_change_value(self, change, value):
        if value is None or value == "" or (isinstance(value, DeletedObject) and value.pk is None):
            return "—"
        field = self.model._meta.get_field(change.field)
        if isinstance(value, bool):
            return gettext("Yes") if value else gettext("No")
        if field.choices and not isinstance(value, list | dict):
            return dict(field.flatchoices).get(value, value)
        return super().prepare_delta_change_value(change, value)


class ConfigHistoryAdmin(SimpleHistoryAdmin):
    """simple_history's admin for every configuration table: an admin save gives no reason (NULL),
    which the history page printed as "None"; it shows blank. Reasons our own commands store (in
    English, as stored text is) are shown in the reader's language."""

    REASONS = {
        "catalog loaded": _("catalog loaded"),  # scenarios/management/commands/load_catalog.py
        "history started": _("history started"),  # a first record written by a migration
    }
    # (model, the name of its key to this admin's model): rows edited inline on this model's page.
    history_children: tuple[tuple[type[models.Model], str], ...] = ()
    CHILD_HISTORY_LIMIT = 50  # records per child table on one page, newest first
    object_history_template = "admin/config_history.html"

    def get_historical_record_context_helper(self, request, historical_record):
        return ConsoleHistoryValues(self.model, historical_record)

    def set_history_delta_changes(self, request, historical_records, **kwargs):
        super().set_history_delta_changes(request, historical_records, **kwargs)
        for record in historical_records:
            self.word_reason(record)

    def word_reason(self, record) -> None:
        reason = record.history_change_reason or ""
        record.history_change_reason = self.REASONS.get(reason, reason)

    def history_view(self, request, object_id, extra_context=None):
        def sections():  # called by the template, after simple_history's view has checked permissions
            return [self.child_history(model, key, object_id) for model, key in self.history_children]

        context = {"child_histories": sections, **(extra_context or {})}
        return super().history_view(request, object_id, extra_context=context)

    def child_history(self, model, key: str, object_id) -> dict:
        """One inline table's latest history records under this object, each with its changes
        against the record before it of the same row (that row's older record is read when it
        falls outside the page)."""
        limit = self.CHILD_HISTORY_LIMIT
        records = list(
            model.history.filter(**{f"{key}_id": object_id})
            .select_related("history_user")
            ._select_related_history_tracked_objs()  # the diffs name related rows: not a query each
            .order_by("-history_date", "-history_id")[: limit + 1]
        )
        more, records = len(records) > limit, records[:limit]
        by_row = defaultdict(list)
        for record in reversed(records):  # oldest first
            by_row[record.id].append(record)
        for row_records in by_row.values():
            previous = row_records[0].prev_record if row_records[0].history_type != "+" else None
            for record in row_records:
                if previous is not None and record.history_type == "~":
                    delta = record.diff_against(previous, foreign_keys_are_objs=True)
                    helper = ConsoleHistoryValues(model, record)
                    record.history_delta_changes = helper.context_for_delta_changes(delta)
                record.row_history_url = self.row_history_url(model, record.id)
                self.word_reason(record)
                previous = record
        return {
            "title": gettext("Changes to its %(items)s") % {"items": model._meta.verbose_name_plural},
            "key": model._meta.model_name,
            "records": records,
            "more": more,
            "limit": limit,
        }

    def row_history_url(self, model, pk) -> str:
        opts = model._meta
        try:
            return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_history", args=[pk])
        except NoReverseMatch:  # not registered in the console: the record is its only view
            return ""
