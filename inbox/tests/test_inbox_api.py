from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from inbox.models import InboxMessage
from inbox.services import inbox_message_put
from tests.clients import inbox_client

pytestmark = pytest.mark.django_db


def put(audience="patient", recipient_id="p-42", n=1, category="consultation", title="消息"):
    return [
        inbox_message_put(
            audience=audience,
            recipient_id=recipient_id,
            title=f"{title}{i}",
            body="正文",
            category=category,
            link={},
            source_key=f"{audience}:{recipient_id}:{category}:{title}:{i}",
        )[0]
        for i in range(n)
    ]


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def token(**overrides) -> str:
    conf = settings.INBOX_JWT
    claims = {"sub": "p-42", "role": "patient", "aud": conf["AUDIENCE"], "exp": timezone.now() + timedelta(hours=1)}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, conf["SECRET"], algorithm="HS256")


@pytest.mark.parametrize(
    ("tok", "code"),
    [
        ("not-a-jwt", "token_invalid"),
        (token(exp=timezone.now() - timedelta(minutes=5)), "token_expired"),
        (token(aud="another-service"), "token_wrong_audience"),
        (token(role="admin"), "token_invalid"),
        (token(sub=None), "token_invalid"),
        (jwt.encode({"sub": "p-42", "role": "patient", "aud": "notifycenter"}, "wrong-secret-" * 4), "token_invalid"),
    ],
)
def test_bad_tokens_are_401_with_distinct_codes(tok, code):
    response = bearer(tok).get("/api/v1/inbox/messages")

    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"] == "Bearer"


def test_an_api_key_alone_cannot_read_an_inbox(backend):
    response = backend.get("/api/v1/inbox/messages")

    assert response.status_code == 403


def test_list_is_newest_first_and_only_my_own(patient_app):
    put(n=3)
    put(recipient_id="p-43", n=2)
    put(audience="doctor", recipient_id="p-42", n=2)  # a doctor with the same id is someone else

    results = patient_app.get("/api/v1/inbox/messages").json()["results"]

    assert [m["title"] for m in results] == ["消息2", "消息1", "消息0"]
    assert all(m["unread"] for m in results)


def test_cursor_pages_have_no_gaps_or_duplicates_while_new_messages_arrive(patient_app):
    put(n=25)
    first = patient_app.get("/api/v1/inbox/messages?limit=10").json()
    put(n=3, title="新")  # arrives between pages
    second = patient_app.get(f"/api/v1/inbox/messages?limit=10&cursor={first['next_cursor']}").json()
    third = patient_app.get(f"/api/v1/inbox/messages?limit=10&cursor={second['next_cursor']}").json()

    titles = [m["title"] for page in (first, second, third) for m in page["results"]]
    assert titles == [f"消息{i}" for i in range(24, -1, -1)]
    assert third["next_cursor"] is None


def test_bad_query_parameters_name_their_field(patient_app):
    response = patient_app.get("/api/v1/inbox/messages?limit=1000&category=spam&cursor=%%%")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"limit", "category"}
    response = patient_app.get("/api/v1/inbox/messages?cursor=bm90LWFuLWlk")
    assert response.json()["fields"] == {"cursor": ["The cursor is malformed."]}


def test_unread_count_per_category_and_mark_read(patient_app):
    consultation = put(n=2)
    put(n=1, category="prescription", title="处方")

    counts = patient_app.get("/api/v1/inbox/unread-count").json()
    assert counts["total"] == 3
    assert counts["by_category"]["consultation"] == 2
    assert counts["by_category"]["prescription"] == 1
    assert counts["by_category"]["points"] == 0

    response = patient_app.post(f"/api/v1/inbox/messages/{consultation[0].pk}/read")
    assert response.status_code == 200
    assert response.json()["unread"] is False
    assert patient_app.get("/api/v1/inbox/unread-count").json()["total"] == 2
    unread = patient_app.get("/api/v1/inbox/messages?unread=true").json()["results"]
    assert consultation[0].pk not in [m["id"] for m in unread]


def test_nobody_reads_someone_elses_message_and_gets_404_not_403():
    (theirs,) = put(recipient_id="p-43")
    doctor_same_id = inbox_client("doctor", "p-43")
    stranger = inbox_client("patient", "p-42")

    for client in (stranger, doctor_same_id):
        response = client.post(f"/api/v1/inbox/messages/{theirs.pk}/read")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert InboxMessage.objects.get(pk=theirs.pk).read_at is None


def test_putting_the_same_source_twice_keeps_one_row():
    first, created = inbox_message_put(
        audience="patient", recipient_id="p-1", title="t", body="b", category="system", link={}, source_key="k"
    )
    again, created_again = inbox_message_put(
        audience="patient", recipient_id="p-1", title="t", body="b", category="system", link={}, source_key="k"
    )
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
