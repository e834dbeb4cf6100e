"""`make run`'s local API key (notifycenter/management/commands/bootstrap_local.py): the key printed
is always one the running database accepts, kept across restarts, and written again when the
file holds a key the database does not know (a file left by a run against another database)."""

import io

import pytest
from django.core.management import call_command

from notifycenter.models import ApiKey

pytestmark = pytest.mark.django_db


def _bootstrap(settings, data_dir) -> str:
    settings.DATA_DIR = data_dir
    call_command("bootstrap_local", stdout=io.StringIO())
    return (data_dir / "dev-api-key").read_text().strip()


def _accepted(raw: str) -> bool:
    return ApiKey.objects.filter(client="local-dev", is_active=True, hashed_key=ApiKey.hash(raw)).exists()


def test_the_key_is_kept_across_restarts(settings, tmp_path):
    first = _bootstrap(settings, tmp_path)
    assert _accepted(first)
    assert _bootstrap(settings, tmp_path) == first


def test_a_key_this_database_does_not_know_is_replaced(settings, tmp_path):
    first = _bootstrap(settings, tmp_path)
    (tmp_path / "dev-api-key").write_text("nc_deadbeef_a-key-from-another-database\n")

    second = _bootstrap(settings, tmp_path)

    assert second != first and _accepted(second)
    assert not _accepted(first)  # one local key at a time
    assert ApiKey.objects.filter(client="local-dev", is_active=True).count() == 1


def test_a_login_this_database_does_not_accept_is_replaced(settings, tmp_path):
    from django.contrib.auth import get_user_model

    _bootstrap(settings, tmp_path)
    (tmp_path / "admin-login.txt").write_text("admin a-password-from-another-database\n")

    _bootstrap(settings, tmp_path)

    username, password = (tmp_path / "admin-login.txt").read_text().split()
    assert get_user_model().objects.get(username=username).check_password(password)


def test_the_local_key_may_use_every_part_of_the_api(settings, tmp_path):
    from notifycenter.models import SCOPES

    first = _bootstrap(settings, tmp_path)
    key = ApiKey.objects.get(client="local-dev", is_active=True)
    assert sorted(key.scopes) == sorted(SCOPES)  # webhooks too: README's POST /api/v1/webhooks
    ApiKey.objects.filter(pk=key.pk).update(scopes=["events"])  # as an older version made it

    assert _bootstrap(settings, tmp_path) == first  # the same key, its scopes brought up to date
    assert sorted(ApiKey.objects.get(pk=key.pk).scopes) == sorted(SCOPES)
