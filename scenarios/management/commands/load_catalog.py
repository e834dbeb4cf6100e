"""`manage.py load_catalog`: the scenario catalog (fixtures/catalog.yaml and the policy defaults)
loaded or reloaded, with a history record for every row it added or changed.

loaddata saves rows raw, and simple_history writes no record for a raw save: after a plain
`loaddata catalog` the console's history of a reloaded template still showed the text it had
before, and a row's first record came from `populate_history`. Here the rows loaddata saved are
collected from its own signals and given a record, in the same transaction, when they are new or
differ from their latest record (a reload that changes nothing writes nothing).

A reloaded row keeps its creation time (the fixture has none, so loaddata wrote the time of the
reload), and its update time too when the reload changed nothing in it.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from simple_history.models import registered_models

from scenarios.models import ChannelBinding

# Stored in English as simple_history stores every reason; the history page shows it translated
# (scenarios/admin.py, ConfigHistoryAdmin.REASONS).
REASON = "catalog loaded"
DEFAULT_FIXTURES = ("catalog", "policy_defaults")


def _tracked_fields(history_model) -> list[str]:
    return [f.attname for f in history_model.tracked_fields]


STAMPS = ("created_at", "updated_at")


def _differs(obj, latest, fields: list[str]) -> bool:
    return any(getattr(obj, f) != getattr(latest, f) for f in fields)


def keep_provider_ids(instance) -> None:
    """Before a raw save of a channel binding that exists: the provider's template id the
    operations staff set in place of the catalog's sandbox one stays (production sends with it;
    the catalog's ids, `sandbox-…` and `SMS_SANDBOX_…`, exist only at the fake providers)."""
    if not isinstance(instance, ChannelBinding) or instance.pk is None:
        return
    stored = ChannelBinding.objects.filter(pk=instance.pk).values_list("external_template_id", flat=True).first()
    if stored and "sandbox" not in stored.lower():
        instance.external_template_id = stored


def keep_stamps(instance) -> None:
    """Before a raw save of a row that exists: its stored creation time back, and its update
    time too when no other column changes."""
    model = type(instance)
    stamps = [f.attname for f in model._meta.concrete_fields if f.attname in STAMPS]
    stored = model.objects.filter(pk=instance.pk).first() if instance.pk is not None and stamps else None
    if stored is None:
        return
    columns = [f.attname for f in model._meta.concrete_fields if f.attname not in STAMPS]
    unchanged = not _differs(instance, stored, columns)
    for name in stamps:
        if name == "created_at" or unchanged:
            setattr(instance, name, getattr(stored, name))


def record_history(saved: dict[type, set]) -> dict[str, int]:
    """A history record for each saved row that has none yet ("+", created) or whose tracked
    fields differ from its latest one ("~", changed). Returns how many per model label."""
    written: dict[str, int] = {}
    for model, pks in saved.items():
        manager = model.history
        fields = _tracked_fields(manager.model)
        latest = {}  # the last record per row (portable: the embedded default is SQLite)
        for record in manager.filter(id__in=pks).order_by("history_date", "history_id"):
            latest[record.id] = record
        created, changed = [], []
        for obj in model.objects.filter(pk__in=pks).order_by("pk"):
            if obj.pk not in latest:
                created.append(obj)
            elif _differs(obj, latest[obj.pk], fields):
                changed.append(obj)
        if created:
            manager.bulk_history_create(created, default_change_reason=REASON)
        if changed:
            manager.bulk_history_create(changed, update=True, default_change_reason=REASON)
        if created or changed:
            written[model._meta.label] = len(created) + len(changed)
    return written


class Command(BaseCommand):
    help = "Load or reload the scenario catalog, recording each added or changed row in its history."

    def add_arguments(self, parser):
        parser.add_argument(
            "fixtures", nargs="*", default=list(DEFAULT_FIXTURES), help="fixture labels (default: %(default)s)"
        )

    def handle(self, *args, fixtures, verbosity, **options):
        tracked = {model for model in registered_models.values() if model._meta.app_label == "scenarios"}
        saved: dict[type, set] = {}

        def stamps(sender, instance, raw, **kwargs):
            if raw and sender in tracked:
                keep_provider_ids(instance)
                keep_stamps(instance)

        def collect(sender, instance, raw, **kwargs):
            if raw and sender in tracked:
                saved.setdefault(sender, set()).add(instance.pk)

        pre_save.connect(stamps, weak=False, dispatch_uid="load_catalog")
        post_save.connect(collect, weak=False, dispatch_uid="load_catalog")
        try:
            with transaction.atomic():
                call_command("loaddata", *fixtures, verbosity=verbosity)
                written = record_history(saved)
        finally:
            pre_save.disconnect(dispatch_uid="load_catalog")
            post_save.disconnect(dispatch_uid="load_catalog")
        if verbosity:
            total = sum(written.values())
            detail = ", ".join(f"{label} {n}" for label, n in sorted(written.items()))
            suffix = f" ({detail})" if detail else ""
            self.stdout.write(f"History: {total} record(s) for added or changed rows{suffix}")
