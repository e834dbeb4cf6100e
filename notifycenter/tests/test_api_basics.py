import pytest
from django.core.management import call_command

from notifycenter.models import ApiKey

pytestmark = pytest.mark.django_db


def test_unknown_api_path_answers_in_the_error_shape(client):
    response = client.get("/api/v1/nowhere")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Not found.", "fields": {}}


def test_wrong_method_answers_in_the_error_shape(backend):
    response = backend.delete("/api/v1/events")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_healthz_checks_the_database(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_openapi_schema_lists_the_public_endpoints(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/events", "/api/v1/events/{event_id}", "/api/v1/inbox/messages", "/api/v1/inbox/unread-count"):
        assert path in paths


def test_create_api_key_prints_the_key_once_and_stores_only_its_hash(capsys):
    call_command("create_api_key", "his-prod-1", "--scopes", "events", "otp", "--quiet")
    raw = capsys.readouterr().out.strip()

    key = ApiKey.objects.get(name="his-prod-1")
    assert raw.startswith(f"nc_{key.prefix}_")
    assert key.hashed_key == ApiKey.hash(raw)
    assert raw not in (key.hashed_key, key.prefix)
    assert key.scopes == ["events", "otp"]


def test_issue_inbox_token_makes_a_token_the_inbox_accepts(capsys, client):
    call_command("issue_inbox_token", "--role", "doctor", "--id", "d-17")
    token = capsys.readouterr().out.strip()

    response = client.get("/api/v1/inbox/unread-count", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response.json()["total"] == 0


def test_admin_speaks_chinese_by_default(admin_client):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "修改密码" in page  # Django's own ("Change password")
    for ours in ("场景与模板", "渠道与投递", "站内信", "渠道账号", "跳转页面"):
        assert ours in page  # ours, from locale/zh_Hans


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_the_committed_openapi_document_is_what_is_served(client, language):
    """`make schema` regenerates docs/openapi.yaml; an API change without it fails here, and so
    does a committed document in another language than the one served (whatever the admin's)."""
    from pathlib import Path

    client.cookies["django_language"] = language
    served = client.get("/api/schema/").content.decode()
    committed = (Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text()
    assert served == committed, "the API changed: run `make schema` and commit docs/openapi.yaml"


def test_api_docs_load_their_scripts_from_this_server(client):
    """Swagger UI and ReDoc come from our static files (drf-spectacular-sidecar), not a CDN."""
    for url in ("/api/docs/", "/api/redoc/"):
        page = client.get(url).content.decode()
        assert "/static/drf_spectacular_sidecar/" in page
        assert "cdn" not in page.lower()


def test_an_unexpected_error_is_a_500_in_the_error_shape(backend, monkeypatch):
    import scenarios.apis

    def boom(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(scenarios.apis, "event_accept", boom)
    response = backend.post("/api/v1/events", {"event": "x", "idempotency_key": "k"}, format="json")

    assert response.status_code == 500
    assert response.json() == {"code": "server_error", "message": "Internal server error.", "fields": {}}


def test_the_console_is_chinese_even_for_an_english_browser_until_english_is_chosen(admin_client):
    page = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert "通知中心运营后台" in page and "场景与模板" in page

    admin_client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    page = admin_client.get("/admin/").content.decode()
    assert "notifycenter operations console" in page and "Scenarios and templates" in page
