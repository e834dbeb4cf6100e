"""The inbox's source_key stays unique under the same constraint name; only the LIKE index that
Django makes beside `unique=True` on PostgreSQL (varchar_pattern_ops) goes. Nothing queries
source_key by prefix, and each new message, and each read one (read_at is indexed, so no HOT
update), wrote an entry into it. The constraint is not rebuilt: on a large table that would hold
writes while it builds; dropping an index is instant."""

from django.db import migrations, models

LIKE_INDEX = "inbox_inboxmessage_source_key_e12e07a7_like"


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {LIKE_INDEX}")


def recreate_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX} ON inbox_inboxmessage (source_key varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0003_read_at_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="inboxmessage",
                    name="source_key",
                    field=models.CharField(blank=True, max_length=100, null=True, verbose_name="source"),
                ),
                migrations.AddConstraint(
                    model_name="inboxmessage",
                    constraint=models.UniqueConstraint(fields=("source_key",), name="inbox_inboxmessage_source_key_key"),
                ),
            ],
            database_operations=[migrations.RunPython(drop_like_index, recreate_like_index)],
        ),
    ]
