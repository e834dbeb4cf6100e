"""API keys as authentication reads them: kept per process for a moment (one statement less per
request), refused at once after a revoke in this process, and within KEY_CACHE_SECONDS after a
change made elsewhere."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifycenter import auth
from notifycenter.models import ApiKey
from tests.clients import backend_client

pytestmark = pytest.mark.django_db


def _key_reads(queries) -> int:
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    return sum("notifycenter_apikey" in sql for sql in reads)


def test_a_key_is_read_once_then_kept():
    api = backend_client()
    assert api.get("/api/v1/events/1").status_code == 404  # authenticated, no such event

    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/events/1").status_code == 404

    assert _key_reads(queries.captured_queries) == 0


def test_the_admins_revoke_refuses_the_key_at_once(admin_client):
    api = backend_client()
    assert api.get("/api/v1/events/1").status_code == 404
    key = ApiKey.objects.get()

    response = admin_client.post(
        "/admin/notifycenter/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )

    assert response.status_code == 200
    assert ApiKey.objects.get().is_active is False
    answer = api.get("/api/v1/events/1")
    assert answer.status_code == 401 and answer.json()["code"] == "invalid_api_key"


def test_a_key_saved_inactive_is_refused_at_once():
    api = backend_client()
    assert api.get("/api/v1/events/1").status_code == 404
    key = ApiKey.objects.get()
    key.is_active = False
    key.save()

    assert api.get("/api/v1/events/1").status_code == 401


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_time(monkeypatch):
    api = backend_client()
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    assert api.get("/api/v1/events/1").status_code == 404
    ApiKey.objects.update(is_active=False)  # as another process would: no signal here

    clock[0] += auth.KEY_CACHE_SECONDS / 2
    assert api.get("/api/v1/events/1").status_code == 404  # still kept
    clock[0] += auth.KEY_CACHE_SECONDS / 2
    assert api.get("/api/v1/events/1").status_code == 401


def test_an_unknown_key_is_never_kept():
    ApiKey.generate(client="his", name="other", scopes=["events"])
    api = backend_client()
    api.credentials(HTTP_AUTHORIZATION="Api-Key nc_unknownprefix_secret")
    for _ in range(3):
        assert api.get("/api/v1/events/1").status_code == 401
    assert "unknownprefix" not in auth._keys
