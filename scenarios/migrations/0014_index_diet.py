"""The message's `plan_step_id` loses its own index, which every new message wrote a NULL into:
`message_unique_plan_occurrence` (plan_step, subject_id, due_at, where plan_step is set) begins
with it and serves its lookups (a plan step's PROTECT check asks `plan_step_id IN (...)`). The
foreign key stays (Django's AlterField would drop and add it again, checking every row while
holding writes); dropping an index is instant."""

import django.db.models.deletion
from django.db import migrations, models

PLAN_STEP_INDEX = "scenarios_message_plan_step_id_dc2072cc"


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {PLAN_STEP_INDEX}")


def recreate_index(apps, schema_editor):
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {PLAN_STEP_INDEX} ON scenarios_message (plan_step_id)")


class Migration(migrations.Migration):
    dependencies = [
        ("scenarios", "0013_broadcast_ended_ids_cleared"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="plan_step",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="scenarios.planstep",
                        verbose_name="plan step",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, recreate_index)],
        ),
    ]
