"""The console's reads on a delivery table of tens of millions of rows (bench/console.py):

- a BRIN index of created_at, on PostgreSQL: the home page's deliveries of today read the last
  block ranges only. Tiny, and created_at never changes, so no update loses HOT for it;
- a partial index of the unknown outcomes (few rows): the home page's deliveries needing attention;
- the LIKE index that Django makes beside `unique=True` (varchar_pattern_ops) goes, as the
  inbox's did (inbox 0004): the console now searches keys whole, and a broadcast's cancel reads
  its queued and deferred rows through their partial indexes. The uniqueness stays, under the
  same constraint name, not rebuilt."""

from django.db import migrations, models
from django.db.models import Q

LIKE_INDEX = "channels_delivery_idempotency_key_5c420649_like"
BRIN_INDEX = "delivery_created_brin"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {LIKE_INDEX}")
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {BRIN_INDEX} ON channels_delivery USING brin (created_at)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {BRIN_INDEX}")
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {LIKE_INDEX} ON channels_delivery (idempotency_key varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("channels", "0013_drop_status_change_funnel"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="idempotency_key",
                    field=models.CharField(max_length=100, verbose_name="idempotency key"),
                ),
                migrations.AddConstraint(
                    model_name="delivery",
                    constraint=models.UniqueConstraint(
                        fields=("idempotency_key",), name="channels_delivery_idempotency_key_key"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["updated_at"], condition=Q(status="unknown"), name="delivery_unknown"),
        ),
    ]
