"""The personal-information protection officer's walkthrough (PIPL): what an erasure leaves, what
an access request shows, what the retention purge takes, and the record each request leaves."""

import json
import logging
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from channels.fakeproviders import aliyun_reports, tencent_reports
from channels.models import ProviderReceipt, ReceiptOutcome, Recipient
from channels.otp import otp_issue
from channels.preferences import preference_put
from channels.tests.helpers import SANDBOX_ACCOUNTS, sandbox_account
from inbox.models import InboxMessage
from scenarios.models import EnrollmentStatus, Event, Message, MessageStatus, PlanEnrollment
from scenarios.plans import plans_materialize_due
from scenarios.retention import events_purge
from scenarios.services import messages_fire_due
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "13812345678"
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=SH)


def at(monkeypatch, moment):
    monkeypatch.setattr(timezone, "now", lambda: moment)


def enrol(backend, key="FU-9001"):
    body = {
        "event": "plan.enrolled",
        "idempotency_key": f"enrol-{key}",
        "data": {"plan": "post_consultation", "enrollment_id": key, "start_date": "2026-11-26"},
        "recipients": {"patient": ["p-42"]},
    }
    answer = backend.post("/api/v1/events", body, format="json")
    assert answer.status_code == 202, answer.json()
    return answer.json()["event_id"]


def test_an_erased_patient_gets_no_more_follow_up_reminders(catalog, backend, monkeypatch, capsys):
    """Erasure cancelled the reminders already written, but the plan ran on: the next horizon
    scan wrote new ones, and they landed in the erased person's inbox."""
    at(monkeypatch, NOW)
    enrol(backend)

    call_command("person", "erase", "patient", "p-42", "--yes")
    result = json.loads(capsys.readouterr().out)

    for day in range(0, 40):
        plans_materialize_due(now=NOW + timedelta(days=day))
    messages_fire_due(now=NOW + timedelta(days=40))
    assert not Message.objects.filter(recipient__external_id="p-42", status=MessageStatus.SCHEDULED).exists()
    assert not InboxMessage.objects.filter(audience="patient", recipient_id="p-42").exists()
    assert PlanEnrollment.objects.get().status == EnrollmentStatus.CANCELLED
    assert result["plans_stopped"] == 1


def test_an_erasure_empties_the_data_of_the_events_that_wrote_to_the_person(catalog, backend, capsys):
    """The event's data names the patient (`patient_name`) until the retention purge; once its
    messages are rendered nothing reads it, so the erasure takes it."""
    event_id = backend.post("/api/v1/events", paid_event(), format="json").json()["event_id"]
    assert "张三" in json.dumps(Event.objects.get(pk=event_id).data, ensure_ascii=False)

    call_command("person", "erase", "patient", "p-42", "--yes")
    result = json.loads(capsys.readouterr().out)

    assert Event.objects.get(pk=event_id).data == {}
    assert result["events_emptied"] == 1
    # The same request again is still answered as the first one (matched by its hash, not its data).
    replay = paid_event(key=Event.objects.get(pk=event_id).idempotency_key)
    assert backend.post("/api/v1/events", replay, format="json").status_code == 200


def test_an_event_with_a_reminder_still_due_for_someone_else_keeps_its_data(catalog, backend, capsys):
    """Another person's reminder renders from the event's data when it fires: kept until then."""
    event_id = backend.post("/api/v1/events", paid_event(), format="json").json()["event_id"]
    doctor = Message.objects.filter(event_id=event_id, recipient__external_id="d-17").first()
    Message.objects.filter(pk=doctor.pk).update(
        status=MessageStatus.SCHEDULED, due_at=timezone.now() + timedelta(hours=1)
    )

    call_command("person", "erase", "patient", "p-42", "--yes")
    result = json.loads(capsys.readouterr().out)

    assert (result["events_emptied"], result["events_kept_for_others"]) == (0, 1)
    assert Event.objects.get(pk=event_id).data["patient_name"] == "张三"


def test_the_retention_purge_takes_the_events_of_ended_follow_up_plans(catalog, backend, monkeypatch):
    """A plan's enrolling event (its data, the patient's) was kept for ever, even once the plan
    had ended; a running plan still keeps its event."""
    at(monkeypatch, NOW)
    ended, running = enrol(backend, "FU-1"), enrol(backend, "FU-2")
    PlanEnrollment.objects.filter(enrollment_key="FU-1").update(status=EnrollmentStatus.CANCELLED)
    Message.objects.filter(status=MessageStatus.SCHEDULED).update(status=MessageStatus.CANCELLED)
    Event.objects.filter(pk__in=[ended, running]).update(received_at=NOW - timedelta(days=200))

    assert events_purge(older_than_days=180) == 1

    assert list(Event.objects.values_list("pk", flat=True)) == [running]
    assert list(PlanEnrollment.objects.values_list("enrollment_key", flat=True)) == ["FU-2"]


@pytest.mark.parametrize(("provider", "build"), [("aliyun", aliyun_reports), ("tencent", tencent_reports)])
def test_a_refused_receipt_keeps_its_body_without_the_phone(client, provider, build):
    """A refused call is kept for operations with its body: a report refused as too old (three
    days) is a real one, and its phone was kept in clear, outside the directory and past any
    erasure."""
    credentials = SANDBOX_ACCOUNTS[provider]["credentials"] | {"callback_token": "cb-token-0123456789"}
    account = sandbox_account(provider, credentials=credentials)
    record = {"phone": "+86" + PHONE, "at": time.time() - 5 * 86400, "biz_id": "1^0", "out_id": "m1:sms"}
    record |= {"serial": "0:1", "session_context": "m1:sms"}

    for token in ("cb-token-0123456789", "guess"):
        answer = client.post(
            f"/api/v1/callbacks/{provider}/{account.pk}?token={token}",
            data=build([record]),
            content_type="application/json",
        )
        assert answer.status_code == 401

    kept = json.dumps(
        list(ProviderReceipt.objects.filter(outcome=ReceiptOutcome.REFUSED).values_list("raw", flat=True))
    )
    assert ProviderReceipt.objects.filter(outcome=ReceiptOutcome.REFUSED).count() == 2
    assert PHONE not in kept and PHONE[3:] not in kept
    assert "5678" in kept  # masked, still recognisable


def test_the_access_request_shows_preferences_codes_and_what_happened_to_each_message(catalog, backend, capsys):
    """The export held the directory, consents, deliveries, messages and inbox, but not what the
    person chose to receive, the SMS codes sent to their phone, nor what became of each message
    (the providers' receipts)."""
    person = Recipient.objects.create(audience="patient", external_id="p-42", phone=PHONE)
    preference_put(recipient=person, channels={"sms": False}, categories={})
    with transaction.atomic():
        otp_issue(phone=PHONE, purpose="point.withdrawal_requested")
    backend.post("/api/v1/events", paid_event(), format="json")

    call_command("person", "export", "patient", "p-42")
    exported = json.loads(capsys.readouterr().out)

    assert exported["preferences"]["channels"] == {"sms": False}
    (code,) = exported["sms_codes"]
    assert code["purpose"] == "point.withdrawal_requested" and code["phone"] == "138****5678"
    assert "code_hash" not in code and "sealed_code" not in code
    inbox = next(d for d in exported["deliveries"] if d["channel"] == "inbox")
    assert [c["status"] for c in inbox["status_changes"]][:2] == ["queued", "sent"]


def test_each_export_and_erasure_leaves_a_log_line_with_who_and_whom(catalog, backend, caplog, capsys):
    Recipient.objects.create(audience="patient", external_id="p-42", phone=PHONE)
    caplog.set_level(logging.INFO, logger="notifycenter.pipl")

    call_command("person", "export", "--phone", PHONE, "--by", "ticket-2026-117")
    call_command("person", "erase", "patient", "p-42", "--yes", "--by", "ticket-2026-118")

    lines = [r.getMessage() for r in caplog.records if r.name == "notifycenter.pipl"]
    assert lines == [
        "PIPL export of phone 138****5678 by ticket-2026-117: patient:p-42",
        "PIPL erase of patient:p-42 by ticket-2026-118: patient:p-42",
    ]


SETTINGS_UNDER_UVICORN = """
import logging, os, sys
access = logging.getLogger("uvicorn.access")
if sys.argv[1] == "off":  # what uvicorn's --no-access-log does before it imports the app
    access.handlers, access.propagate = [], False
else:
    access.addHandler(logging.StreamHandler())
os.environ["DJANGO_SETTINGS_MODULE"] = "notifycenter.settings_test"
import django
django.setup()
print(access.hasHandlers())
"""


@pytest.mark.parametrize(("flag", "written"), [("off", "False"), ("on", "True")])
def test_the_web_server_writes_no_access_lines_when_told_not_to(flag, written):
    """`--no-access-log` was undone by Django's logging settings: every request line went to the
    log with its query string (an admin search by openid, a receipt callback's token)."""
    answer = subprocess.run(
        [sys.executable, "-c", SETTINGS_UNDER_UVICORN, flag],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert answer.stdout.strip().splitlines()[-1] == written


def test_looking_a_person_up_in_the_console_leaves_a_log_line(client, caplog):
    """Nothing recorded who opened a person's page or found them by their phone in the console."""
    from django.contrib.auth.models import User

    person = Recipient.objects.create(audience="patient", external_id="p-42", phone=PHONE)
    client.force_login(User.objects.create_superuser("auditor-test", password="a-long-Passphrase-2026"))
    caplog.set_level(logging.INFO, logger="notifycenter.pipl")

    assert client.get(f"/admin/channels/recipient/?q={PHONE}").status_code == 200
    assert client.get(f"/admin/channels/recipient/{person.pk}/change/").status_code == 200

    lines = [r.getMessage() for r in caplog.records if r.name == "notifycenter.pipl"]
    assert lines == [
        f"console search of recipients by an address by auditor-test: #{person.pk}",
        f"console view of recipient #{person.pk} by auditor-test",
    ]


def test_receipts_and_webhook_deliveries_go_with_the_retention_purge(settings):
    """Both outlived the deliveries they name (a receipt's delivery is SET_NULL by the event
    purge; a webhook delivery names ids only): kept for ever, refused bodies and endpoint answers
    included. What is still under way stays."""
    from channels.tasks import purge_old_receipts
    from notifycenter.models import WebhookDelivery, WebhookStatus
    from notifycenter.tasks import purge_old_webhook_deliveries
    from notifycenter.webhooks import webhook_endpoint_create

    settings.EVENT_RETENTION_DAYS = 180
    old = timezone.now() - timedelta(days=200)
    for outcome in (ReceiptOutcome.REFUSED, ReceiptOutcome.UNMATCHED, ReceiptOutcome.EARLY, ReceiptOutcome.APPLIED):
        ProviderReceipt.objects.create(provider="aliyun", outcome=outcome, received_at=old)
    ProviderReceipt.objects.create(provider="aliyun", outcome=ReceiptOutcome.APPLIED)
    endpoint = webhook_endpoint_create(
        client="his", url="https://his.example/hook", secret="s" * 16, events=["delivery.sent"]
    )
    for n, status in enumerate((WebhookStatus.DELIVERED, WebhookStatus.FAILED, WebhookStatus.PENDING, "new")):
        row = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=f"evt_{n}",
            event="delivery.sent",
            subject=f"d:{n}",
            payload={},
            status=WebhookStatus.DELIVERED if status == "new" else status,
            next_try_at=timezone.now(),
        )
        if status != "new":
            WebhookDelivery.objects.filter(pk=row.pk).update(created_at=old)

    assert (purge_old_receipts(), purge_old_webhook_deliveries()) == (3, 2)

    assert sorted(ProviderReceipt.objects.values_list("outcome", flat=True)) == ["applied", "early"]
    assert sorted(WebhookDelivery.objects.values_list("event_id", flat=True)) == ["evt_2", "evt_3"]


def test_a_phone_that_only_received_codes_leaves_the_directory_with_its_codes(catalog):
    """An SMS code goes to a directory entry `otp-…` holding the phone: the code went after 30
    days, the phone stayed for good."""
    from channels.models import OtpCode
    from channels.tasks import purge_otp_codes
    from tests.clients import backend_client

    api = backend_client(scopes=("otp",))
    for phone in (PHONE, "13900001111"):
        answer = api.post(
            "/api/v1/otp",
            {
                "phone": phone,
                "purpose": "point.withdrawal_requested",
                "data": {"withdrawal_id": "W1", "amount": "3.00"},
            },
            format="json",
        )
        assert answer.status_code == 201, answer.json()
    OtpCode.objects.filter(phone="138****5678").update(created_at=timezone.now() - timedelta(days=31))

    assert purge_otp_codes() == 1

    entries = {r.phone: r for r in Recipient.objects.filter(external_id__startswith="otp-")}
    assert set(entries) == {"", "13900001111"}
    assert entries[""].phone_hash == ""


def test_the_refused_bodies_kept_before_are_masked_by_a_migration():
    """The rows already kept with a clear phone (before the masking) are masked in place."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("channels.migrations.0017_mask_refused_receipt_bodies")
    body = json.dumps([{"phone_number": PHONE, "biz_id": "1^0"}])
    kept = ProviderReceipt.objects.create(provider="aliyun", outcome=ReceiptOutcome.REFUSED, raw={"body": body})

    migration.mask_bodies(apps, None)

    kept.refresh_from_db()
    assert PHONE not in kept.raw["body"] and "138****5678" in kept.raw["body"]


def test_the_console_cannot_delete_a_person_and_says_how_to_erase_one(client):
    """Deleting a directory entry in the console left the person's inbox, message texts and event
    data and looked like an erasure (or failed on their reminders). No one may, a superuser
    included; the page points to `manage.py person erase`."""
    from django.contrib.auth.models import User
    from django.utils import translation

    person = Recipient.objects.create(audience="patient", external_id="p-42", name="张三", phone=PHONE)
    client.force_login(User.objects.create_superuser("dpo", password="a-long-Passphrase-2026"))

    page = client.get(f"/admin/channels/recipient/{person.pk}/change/")
    listing = client.get("/admin/channels/recipient/")
    delete = client.post(f"/admin/channels/recipient/{person.pk}/delete/", {"post": "yes"})

    assert page.status_code == 200
    with translation.override("zh-hans"):
        assert "manage.py person erase" in page.content.decode()
    assert f"/admin/channels/recipient/{person.pk}/delete/" not in page.content.decode()
    assert 'value="delete_selected"' not in listing.content.decode()
    assert delete.status_code == 403
    assert Recipient.objects.filter(pk=person.pk).exists()


def test_each_request_is_kept_as_a_record_the_console_shows_and_no_one_edits(catalog, backend, client, capsys):
    """Log lines live as long as the journal; the record an auditor asks for years later is a
    row: what was asked about (a phone masked), by whom, which entries it found."""
    from django.contrib.auth.models import User

    from notifycenter.models import PersonRequest

    Recipient.objects.create(audience="patient", external_id="p-42", phone=PHONE)
    call_command("person", "export", "--phone", PHONE, "--by", "ticket-2026-117")
    call_command("person", "erase", "patient", "p-42", "--yes", "--by", "ticket-2026-118")

    rows = list(PersonRequest.objects.order_by("pk").values_list("action", "asked", "entries", "requested_by"))
    assert rows == [
        ("export", "phone 138****5678", ["patient:p-42"], "ticket-2026-117"),
        ("erase", "patient:p-42", ["patient:p-42"], "ticket-2026-118"),
    ]
    assert all(PersonRequest.objects.values_list("run_by", flat=True))
    client.force_login(User.objects.create_superuser("dpo", password="a-long-Passphrase-2026"))
    listing = client.get("/admin/notifycenter/personrequest/")
    assert listing.status_code == 200 and "ticket-2026-118" in listing.content.decode()
    assert PHONE not in listing.content.decode()
    record = PersonRequest.objects.first()
    assert client.get("/admin/notifycenter/personrequest/add/").status_code == 403
    assert client.post(f"/admin/notifycenter/personrequest/{record.pk}/delete/", {"post": "yes"}).status_code == 403


def test_an_erasure_that_cannot_be_recorded_is_not_done(catalog, backend, monkeypatch):
    from notifycenter.models import PersonRequest

    person = Recipient.objects.create(audience="patient", external_id="p-42", name="张三", phone=PHONE)

    def refuse(**fields):
        raise RuntimeError("the record could not be written")

    monkeypatch.setattr(PersonRequest.objects, "create", refuse)
    with pytest.raises(RuntimeError):
        call_command("person", "erase", "patient", "p-42", "--yes")

    person.refresh_from_db()
    assert (person.name, person.phone) == ("张三", PHONE)
