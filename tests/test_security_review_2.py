"""The second security review (after the CORS, CSP, token-lifetime, PIPL-record and access-log
changes): what an attacker tried and found broken, each fixed here."""

import logging
import time

import jwt
import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from notifycenter.logs import QueryValues
from tests.clients import backend_client

pytestmark = pytest.mark.django_db


def bearer(claims: dict) -> APIClient:
    api = APIClient()
    token = jwt.encode(claims, settings.INBOX_JWT["SECRET"], algorithm="HS256")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def claims_with(**overrides) -> dict:
    now = int(time.time())
    base = {"sub": "p-42", "role": "patient", "aud": settings.INBOX_JWT["AUDIENCE"], "exp": now + 600}
    return {**base, **overrides}


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": str(int(time.time()) + 10 * 365 * 86400)},  # PyJWT takes int("…") as a number
        {"exp": str(int(time.time()) + 600)},
        {"iat": "0"},
        {"iat": str(int(time.time()))},
    ],
)
def test_a_time_claim_given_as_digits_in_a_string_is_refused_not_a_server_error(overrides):
    """PyJWT checks exp and iat with int(), which reads "1700000000" as a number; the lifetime
    check then subtracted a string: 500 on every inbox path (and an exception on the live ones)."""
    answer = bearer(claims_with(**overrides)).get("/api/v1/inbox/unread-count")

    assert answer.status_code == 401
    assert answer.json()["code"] == "token_invalid"


def test_a_string_exp_is_refused_on_the_live_endpoints_too(settings):
    from inbox.live import LiveError
    from notifycenter.asgi import live_person

    settings.INBOX_JWT = {**settings.INBOX_JWT, "MAX_LIFETIME_HOURS": 0}  # no lifetime check at all
    token = jwt.encode(claims_with(exp=str(int(time.time()) + 600)), settings.INBOX_JWT["SECRET"], algorithm="HS256")
    with pytest.raises(LiveError) as refused:
        live_person(token)
    assert refused.value.code == "token_invalid"


def access_line(path: str) -> str:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", path, "1.1", 200),
        None,
    )
    QueryValues().filter(record)
    return record.getMessage()


@pytest.mark.parametrize(
    "path",
    [
        # uvicorn logs the decoded path: a %3F in it is a "?" before the query's own
        "/admin/channels/recipient/x?platform=?q=13912345678",
        "/admin/channels/recipient/?p=1?q=13912345678",
        "/api/v1/receipts/aliyun?all=1&all=x?token=s3cr3t-callback-token",
    ],
)
def test_a_question_mark_in_the_path_or_a_value_does_not_carry_a_value_past_the_mask(path):
    line = access_line(path)

    assert "13912345678" not in line
    assert "s3cr3t" not in line


def test_the_parameters_that_name_no_one_stay_readable():
    line = access_line("/api/v1/inbox/messages?platform=ios&limit=20&cursor=cD0yMDI2LTEx%3D&unread=true&q=13912345678")

    assert "platform=ios&limit=20&cursor=cD0yMDI2LTEx%3D&unread=true" in line
    assert "13912345678" not in line


H5_ORIGIN = "https://m.hospital.cn"


@pytest.fixture
def h5_listed(settings):
    settings.CORS_ALLOWED_ORIGINS = [H5_ORIGIN]


def cors_headers(answer) -> dict:
    return {k.lower(): v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}


@pytest.mark.parametrize(
    "path",
    ["/api/v1/inbox/patient/p-42/unread-count", "/api/v1/inbox/patient/p-42/messages", "/api/v1/inbox/doctor/d-1/mark"],
)
def test_the_backends_on_behalf_inbox_paths_answer_no_browser_origin(h5_listed, path):
    """CORS_URLS_REGEX (^/api/v1/inbox/) also opened the Api-Key paths the hospital backend reads
    a person's inbox by: a listed origin's page holding a key could call them from the browser,
    though the setting's own words say the Api-Key paths are never called from one."""
    preflight = Client().options(
        path,
        HTTP_ORIGIN=H5_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    answer = backend_client(scopes=("inbox-read",)).get(path, HTTP_ORIGIN=H5_ORIGIN)

    assert "access-control-allow-origin" not in cors_headers(preflight)
    assert "access-control-allow-origin" not in cors_headers(answer)


@pytest.mark.parametrize(
    "path", ["/api/v1/inbox/unread-count", "/api/v1/inbox/messages", "/api/v1/inbox/messages/1/read"]
)
def test_the_persons_own_inbox_paths_stay_open_to_a_listed_origin(h5_listed, path):
    preflight = Client().options(
        path,
        HTTP_ORIGIN=H5_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )

    assert cors_headers(preflight)["access-control-allow-origin"] == H5_ORIGIN
    assert "access-control-allow-credentials" not in cors_headers(preflight)
