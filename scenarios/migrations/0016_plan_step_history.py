import datetime
import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def history_started(apps, schema_editor):
    """A first record for each step that exists already, as simple_history's populate_history
    writes it, so that its first change on the plan's history page shows what it was before."""
    steps = apps.get_model("scenarios", "PlanStep").objects.all()
    history = apps.get_model("scenarios", "HistoricalPlanStep")
    now = timezone.now()
    history.objects.bulk_create(
        history(
            id=step.id,
            plan_id=step.plan_id,
            order=step.order,
            template_id=step.template_id,
            day_offset=step.day_offset,
            time_of_day=step.time_of_day,
            rrule=step.rrule,
            history_date=now,
            history_type="+",
            history_change_reason="history started",  # worded by ConfigHistoryAdmin.REASONS
        )
        for step in steps.iterator()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("scenarios", "0015_recurring_broadcast_last_failure"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="HistoricalPlanStep",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("order", models.PositiveIntegerField(default=0, verbose_name="order")),
                ("day_offset", models.PositiveIntegerField(default=0, verbose_name="day offset")),
                ("time_of_day", models.TimeField(default=datetime.time(9, 0), verbose_name="time of day")),
                ("rrule", models.CharField(blank=True, max_length=255, verbose_name="RRULE")),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1),
                ),
                (
                    "history_user",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "plan",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="scenarios.followupplan",
                        verbose_name="plan",
                    ),
                ),
                (
                    "template",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="scenarios.template",
                        verbose_name="template",
                    ),
                ),
            ],
            options={
                "verbose_name": "historical plan step",
                "verbose_name_plural": "historical plan steps",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.RunPython(history_started, migrations.RunPython.noop),
    ]
