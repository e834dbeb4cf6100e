"""What a first production install ran into outside deploy/: a secret that django-environ misread,
a catalog reload that put the sandbox's template ids back over the hospital's own, and a channel
account the admin made in sandbox mode."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("variable", ["DJANGO_SECRET_KEY", "INBOX_JWT_SECRET", "METRICS_TOKEN", "FIELD_HASH_KEY"])
def test_a_secret_starting_with_a_dollar_sign_is_read_as_written(tmp_path, variable):
    """Django's own get_random_secret_key() starts with `$` once in 50 keys; django-environ reads
    such a value as the name of another variable ("Set the ... environment variable")."""
    secret = "$" + "k3y-" * 15
    env = {
        "PATH": os.environ["PATH"],
        "NOTIFYCENTER_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "DJANGO_SECRET_KEY": "x" * 60,
        variable: secret,
    }
    read = {
        "DJANGO_SECRET_KEY": "settings.SECRET_KEY",
        "INBOX_JWT_SECRET": "settings.INBOX_JWT['SECRET']",
        "METRICS_TOKEN": "settings.METRICS_TOKEN",
        "FIELD_HASH_KEY": "settings.FIELD_HASH_KEY",
    }[variable]
    done = subprocess.run(
        [sys.executable, "-c", f"from django.conf import settings; print({read})"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == secret, done.stderr[-500:]


@pytest.mark.django_db
def test_reloading_the_catalog_keeps_the_hospitals_own_template_ids():
    """README: `manage.py load_catalog` refreshes the catalog later. In production the operations
    staff replace each binding's sandbox template id with the one WeChat or the SMS provider
    approved; a reload (after an upgrade) must not send `sandbox-…` ids to the real providers."""
    from scenarios.models import ChannelBinding

    call_command("load_catalog", verbosity=0)
    binding = ChannelBinding.objects.filter(external_template_id__startswith="sandbox-").first()
    binding.external_template_id = "Xk9-approved-by-wechat"
    binding.save()
    call_command("load_catalog", verbosity=0)
    binding.refresh_from_db()
    assert binding.external_template_id == "Xk9-approved-by-wechat"


def test_a_channel_account_added_in_the_admin_starts_out_of_sandbox(admin_client):
    """In production the account an administrator adds is the real provider's; with *sandbox*
    ticked by default every message goes to FAKE_PROVIDERS_URL (127.0.0.1:8081) and fails there."""
    page = admin_client.get("/admin/channels/channelaccount/add/").content.decode()
    (checkbox,) = [tag for tag in page.split("<input")[1:] if 'name="sandbox"' in tag]
    assert "checked" not in checkbox.split(">")[0]
