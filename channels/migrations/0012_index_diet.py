"""Two indexes every new delivery wrote into and nothing needed:
- `recipient_id` alone: `delivery_recent` (recipient, channel, created_at) begins with it, and
  serves its lookups (a person's erasure sets it to NULL by it);
- `duplicate_of_id`: almost every row holds NULL there, and a B-tree keeps NULLs; now indexed
  where set only (`delivery_duplicate_of`), which serves `duplicate_of_id IN (...)` as well.

The foreign keys stay as they are: Django's AlterField would drop and add them again, and adding
one checks every row while holding writes. Dropping an index is instant; the partial index is
built from the rows that have a duplicate (few)."""

import django.db.models.deletion
from django.db import migrations, models

RECIPIENT_INDEX = "channels_delivery_recipient_id_5ef04290"
DUPLICATE_INDEX = "channels_delivery_duplicate_of_id_6a7a0e10"


def drop_indexes(apps, schema_editor):
    for name in (RECIPIENT_INDEX, DUPLICATE_INDEX):
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def recreate_indexes(apps, schema_editor):
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {RECIPIENT_INDEX} ON channels_delivery (recipient_id)")
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {DUPLICATE_INDEX} ON channels_delivery (duplicate_of_id)")


class Migration(migrations.Migration):
    dependencies = [
        ("channels", "0011_delivery_due_inbox_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="duplicate_of",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="channels.delivery",
                        verbose_name="duplicate of",
                    ),
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="recipient",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="channels.recipient",
                        verbose_name="recipient",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, recreate_indexes)],
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("duplicate_of__isnull", False)),
                fields=["duplicate_of"],
                name="delivery_duplicate_of",
            ),
        ),
    ]
