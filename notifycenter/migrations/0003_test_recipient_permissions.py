"""The groups again, now that scenarios.TestRecipient exists: editors manage test recipients."""

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
        ("notifycenter", "0002_operations_groups"),
        ("scenarios", "0008_test_recipients"),
    ]

    operations = [migrations.RunPython(make_groups, migrations.RunPython.noop)]
