"""The API under a fuzzer: schemathesis generates requests from our own OpenAPI document
(valid and invalid ones), sends them with valid credentials through the WSGI app, and checks
every answer: never a 5xx, only documented status codes, content types, headers and bodies.

Bounded and deterministic: a fixed number of examples per operation (FUZZ_EXAMPLES, default
30), derandomized, no example database; about a minute on two cores."""

import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifycenter.models import SCOPES
from tests.clients import backend_client, inbox_client

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
# Hypothesis keeps a cache even without an example database: outside the repository, which
# `make test` must leave as it found it (scripts/check_clean.sh).
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "notifycenter-hypothesis"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# The committed document (a test keeps it equal to what /api/schema/ serves), sent to the WSGI app.
schema = schemathesis.openapi.from_path(str(Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"))
schema.app = get_wsgi_application()


@pytest.fixture
def credentials(catalog):
    backend = backend_client(scopes=tuple(SCOPES))._credentials["HTTP_AUTHORIZATION"]
    app = inbox_client("patient", "p-42")._credentials["HTTP_AUTHORIZATION"]
    return {"backend": backend, "app": app}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_every_generated_request_as_documented(case, credentials):
    # An app user's own inbox takes the Bearer token; everything else the backend's API key.
    own_inbox = case.path.startswith("/api/v1/inbox/") and "{audience}" not in case.path
    authorization = credentials["app"] if own_inbox else credentials["backend"]
    case.call_and_validate(headers={"Authorization": authorization}, checks=CHECKS)
