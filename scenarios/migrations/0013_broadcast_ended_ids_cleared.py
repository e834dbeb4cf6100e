"""Ended broadcasts keep their counts, not their list of people (scenarios/fanout.py now clears
it as a broadcast ends); this clears the lists of the ones that ended before."""

from django.db import migrations

OPEN = ("queued", "running")


def clear_ended_lists(apps, schema_editor):
    Broadcast = apps.get_model("scenarios", "Broadcast")
    Broadcast.objects.exclude(status__in=OPEN).exclude(external_ids=[]).update(external_ids=[])


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0012_broadcasts_large_audience")]

    operations = [migrations.RunPython(clear_ended_lists, migrations.RunPython.noop)]
