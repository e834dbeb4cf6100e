"""API clients as the hospital backend and the apps hold them."""

from rest_framework.test import APIClient

from notifycenter.auth import issue_inbox_token
from notifycenter.models import ApiKey


def backend_client(*, client: str = "his", scopes: tuple[str, ...] = ("events", "recipients")) -> APIClient:
    _, raw = ApiKey.generate(client=client, name="test", scopes=list(scopes))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return api


def inbox_client(role: str, external_id: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_inbox_token(role=role, external_id=external_id)}")
    return api
