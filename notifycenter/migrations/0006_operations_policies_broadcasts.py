"""The groups again: operations editors send and cancel broadcasts to a list or a segment, keep
the delivery policies' defaults (preference defaults, an audience's quiet hours) and read the
inbox; viewers read them (a walkthrough of a new scenario met 403 on each)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from notifycenter.groups import groups_sync


def make_groups(apps, schema_editor):
    # As 0002: permissions are normally made after all migrations; make them now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    groups_sync(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("notifycenter", "0005_webhook_url_without_credentials"),
        ("scenarios", "0016_plan_step_history"),
        ("channels", "0015_receipt_search_indexes"),
        ("inbox", "0004_source_key_without_like_index"),
    ]

    operations = [migrations.RunPython(make_groups, migrations.RunPython.noop)]
