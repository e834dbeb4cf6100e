"""Fixtures shared by every app's tests: the catalog, an API client with a key, inbox tokens."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from notifycenter.auth import issue_inbox_token
from notifycenter.models import ApiKey


@pytest.fixture
def catalog(db):
    call_command("loaddata", "catalog", verbosity=0)


@pytest.fixture
def backend(db):
    """The hospital backend: an API client holding a key with the events scope."""
    _, raw = ApiKey.generate(client="his", name="test", scopes=["events", "recipients"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def inbox_client(role: str, external_id: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_inbox_token(role=role, external_id=external_id)}")
    return client


@pytest.fixture
def patient_app(db):
    return inbox_client("patient", "p-42")


@pytest.fixture
def doctor_app(db):
    return inbox_client("doctor", "d-17")
