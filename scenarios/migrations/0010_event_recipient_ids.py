"""Events keep recipient ids only: strip the inline addresses (phones, openids) earlier events
kept in `Event.recipients`; the directory already holds them."""

from django.db import migrations


def ids_only(apps, schema_editor):
    Event = apps.get_model("scenarios", "Event")
    batch = []
    for event in Event.objects.only("id", "recipients").iterator(chunk_size=2000):
        recipients = event.recipients or {}
        if not any(isinstance(e, dict) for entries in recipients.values() for e in entries):
            continue
        event.recipients = {
            audience: [str(e["id"]) if isinstance(e, dict) else str(e) for e in entries]
            for audience, entries in recipients.items()
        }
        batch.append(event)
        if len(batch) >= 2000:
            Event.objects.bulk_update(batch, ["recipients"])
            batch = []
    if batch:
        Event.objects.bulk_update(batch, ["recipients"])


class Migration(migrations.Migration):
    dependencies = [("scenarios", "0009_template_buttons")]

    operations = [migrations.RunPython(ids_only, migrations.RunPython.noop)]
