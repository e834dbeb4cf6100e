from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from inbox.models import InboxMessage
from inbox.services import inbox_message_put, inbox_messages_purge
from tests.clients import backend_client, inbox_client

pytestmark = pytest.mark.django_db

LINK = {
    "target": "inquiry_detail",
    "route": "inquiry_detail",
    "params": {"inquiry_id": "9001"},
    "mini_program": "/pages/inquiry/detail?inquiryId=9001",
    "h5": "https://m.hospital.example/inquiry/detail?inquiryId=9001",
    "app": "hospitaldoctor://inquiry/detail?inquiryId=9001",
}


def put(recipient_id="p-42", category="consultation", title="消息", audience="patient", link=None):
    message, _ = inbox_message_put(
        audience=audience,
        recipient_id=recipient_id,
        title=title,
        body="正文",
        category=category,
        link=link or {},
        source_key=f"{audience}:{recipient_id}:{title}",
    )
    return message


def test_read_all_marks_every_unread_or_one_category_and_only_mine(patient_app):
    put(title="a")
    put(title="b")
    put(title="c", category="prescription")
    theirs = put(recipient_id="p-43", title="d")

    response = patient_app.post("/api/v1/inbox/read-all", {"category": "consultation"}, format="json")
    assert response.json() == {"marked": 2}
    assert patient_app.get("/api/v1/inbox/unread-count").json()["by_category"]["prescription"] == 1

    assert patient_app.post("/api/v1/inbox/read-all", {}, format="json").json() == {"marked": 1}
    assert patient_app.get("/api/v1/inbox/unread-count").json()["total"] == 0
    theirs.refresh_from_db()
    assert theirs.read_at is None
    bad = patient_app.post("/api/v1/inbox/read-all", {"category": "spam"}, format="json")
    assert (bad.status_code, list(bad.json()["fields"])) == (400, ["category"])


def test_a_deleted_message_leaves_lists_and_counts_and_others_cannot_delete_mine(patient_app):
    mine = put(title="a")
    put(title="b")

    stranger = inbox_client("patient", "p-43")
    assert stranger.delete(f"/api/v1/inbox/messages/{mine.pk}").status_code == 404
    assert patient_app.delete(f"/api/v1/inbox/messages/{mine.pk}").status_code == 204

    titles = [m["title"] for m in patient_app.get("/api/v1/inbox/messages").json()["results"]]
    assert titles == ["b"]
    assert patient_app.get("/api/v1/inbox/unread-count").json()["total"] == 1
    assert patient_app.delete(f"/api/v1/inbox/messages/{mine.pk}").status_code == 404
    assert patient_app.post(f"/api/v1/inbox/messages/{mine.pk}/read").status_code == 404
    # The row stays, so the same delivery retried cannot bring it back.
    again, created = inbox_message_put(
        audience="patient",
        recipient_id="p-42",
        title="a",
        body="正文",
        category="consultation",
        link={},
        source_key=mine.source_key,
    )
    assert not created and again.deleted_at is not None


def test_links_are_resolved_for_the_callers_platform(patient_app):
    put(link=LINK)

    by_query = patient_app.get("/api/v1/inbox/messages?platform=mini_program").json()["results"][0]["link"]
    by_header = patient_app.get("/api/v1/inbox/messages", HTTP_X_CLIENT_PLATFORM="app").json()["results"][0]["link"]
    everything = patient_app.get("/api/v1/inbox/messages").json()["results"][0]["link"]

    assert by_query == {
        "target": "inquiry_detail",
        "route": "inquiry_detail",
        "params": {"inquiry_id": "9001"},
        "platform": "mini_program",
        "url": "/pages/inquiry/detail?inquiryId=9001",
    }
    assert by_header["url"] == "hospitaldoctor://inquiry/detail?inquiryId=9001"
    assert everything == LINK
    bad = patient_app.get("/api/v1/inbox/messages?platform=fax")
    assert bad.status_code == 400 and bad.json()["fields"] == {"platform": ["One of mini_program, h5, app."]}


def test_unread_count_answers_304_to_a_matching_etag_and_200_when_it_changed(patient_app):
    put(title="a")
    first = patient_app.get("/api/v1/inbox/unread-count")
    etag = first["ETag"]

    same = patient_app.get("/api/v1/inbox/unread-count", HTTP_IF_NONE_MATCH=etag)
    assert (same.status_code, same.content, same["ETag"]) == (304, b"", etag)

    put(title="b")
    changed = patient_app.get("/api/v1/inbox/unread-count", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed.json()["total"] == 2 and changed["ETag"] != etag


def test_a_backend_with_inbox_read_reads_and_marks_on_a_persons_behalf():
    message = put(audience="doctor", recipient_id="d-17", title="接诊提醒")
    reader = backend_client(client="his", scopes=("inbox-read",))

    listed = reader.get("/api/v1/inbox/doctor/d-17/messages").json()["results"]
    assert [m["title"] for m in listed] == ["接诊提醒"]
    assert reader.post(f"/api/v1/inbox/doctor/d-17/messages/{message.pk}/read").status_code == 200
    assert reader.get("/api/v1/inbox/doctor/d-17/unread-count").json()["total"] == 0
    # Someone else's message under another person's path: 404, as for the apps.
    assert reader.post(f"/api/v1/inbox/patient/d-17/messages/{message.pk}/read").status_code == 404
    assert reader.get("/api/v1/inbox/nurse/n-1/messages").status_code == 404

    events_only = backend_client(client="his2", scopes=("events",))
    response = events_only.get("/api/v1/inbox/doctor/d-17/messages")
    assert (response.status_code, response.json()["code"]) == (403, "missing_scope")
    app_user = inbox_client("doctor", "d-17")
    assert app_user.get("/api/v1/inbox/doctor/d-18/messages").status_code == 403


def test_rs256_tokens_are_checked_with_the_public_key(settings, client):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings.INBOX_JWT = {**settings.INBOX_JWT, "ALGORITHM": "RS256", "PUBLIC_KEY": public_pem}
    claims = {"sub": "p-42", "role": "patient", "aud": "notifycenter", "exp": timezone.now() + timedelta(hours=1)}
    put(title="a")

    good = jwt.encode(claims, key, algorithm="RS256")
    response = client.get("/api/v1/inbox/unread-count", HTTP_AUTHORIZATION=f"Bearer {good}")
    assert response.status_code == 200 and response.json()["total"] == 1

    forged = jwt.encode(claims, "a-guessed-hs256-secret-of-some-length!!", algorithm="HS256")
    response = client.get("/api/v1/inbox/unread-count", HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


def test_retention_purges_old_messages_in_small_batches():
    for i in range(7):
        put(title=f"old{i}")
    put(title="new")
    InboxMessage.objects.exclude(title="new").update(created_at=timezone.now() - timedelta(days=400))

    assert inbox_messages_purge(older_than_days=365, batch_size=3, max_batches=2) == 6
    assert inbox_messages_purge(older_than_days=365, batch_size=3) == 1
    assert list(InboxMessage.objects.values_list("title", flat=True)) == ["new"]
