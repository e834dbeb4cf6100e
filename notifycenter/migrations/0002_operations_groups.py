"""The permission groups of notifycenter/groups.py, made at migrate time (issue 7)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from notifycenter.groups import GROUPS, groups_sync


def make_groups(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now so the groups can hold them.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    groups_sync(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()

class Migration(migrations.Migration):
    dependencies = [
        ("notifycenter", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("scenarios", "0006_verbose_names"),
        ("channels", "0005_delivery_permissions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(make_groups, remove_groups)]
