"""The console's pages read what they show, not whole tables (bench/console.py has the figures at
10 million deliveries): every statement a page runs over the large tables can be served by an
index; filters take their choices without a DISTINCT over the table; search matches whole values
through indexes; the pager estimates where an exact count would take too long; a cell whose every
try was skipped counts its skips up to a bound."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from inbox import admin_lists
from inbox.models import InboxMessage
from scenarios.models import Event
from tests.factories import paid_event

pytestmark = pytest.mark.django_db

LARGE = ("channels_delivery", "scenarios_event", "scenarios_message", "inbox_inboxmessage", "channels_providerreceipt")


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tables this small would be scanned
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(line for (line,) in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    return plan


def test_every_statement_of_the_console_s_pages_over_the_large_tables_can_use_an_index(catalog, backend, admin_client):
    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    delivery = Delivery.objects.filter(channel="inbox").first()
    Delivery.objects.filter(pk=delivery.pk + 1).update(status=DeliveryStatus.UNKNOWN)
    event = Event.objects.get()
    pages = [
        reverse("admin:index"),
        reverse("admin:channels_delivery_changelist"),
        reverse("admin:channels_delivery_changelist") + "?status__exact=failed",
        reverse("admin:channels_delivery_changelist") + f"?q={delivery.pk}",
        reverse("admin:channels_delivery_changelist") + f"?q={delivery.template_code}",
        reverse("admin:channels_delivery_changelist") + "?q=p-42",
        reverse("admin:channels_delivery_changelist") + f"?q={delivery.idempotency_key}",
        reverse("admin:scenarios_event_changelist"),
        reverse("admin:scenarios_event_changelist") + f"?q={event.idempotency_key}",
        reverse("admin:scenarios_event_changelist") + "?q=9001",
        reverse("admin:scenarios_event_changelist") + "?q=inquiry.paid",
        reverse("admin:scenarios_message_changelist") + "?q=p-42",
        reverse("admin:scenarios_message_changelist") + f"?q={event.pk}",
        reverse("admin:scenarios_scenario_coverage"),
        reverse("admin:inbox_inboxmessage_changelist") + "?q=p-42",
        reverse("admin:channels_providerreceipt_changelist"),
        reverse("admin:channels_providerreceipt_changelist") + "?q=17850000001^0",
        reverse("admin:channels_providerreceipt_changelist") + f"?q={delivery.pk}",
    ]
    scanned = []
    for page in pages:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(page).status_code == 200, page
        for query in ctx.captured_queries:
            sql = query["sql"]
            if not sql.startswith(("SELECT", "WITH")) or not any(f'"{t}"' in sql or f" {t} " in sql for t in LARGE):
                continue
            plan = _plan(sql)
            if any(f"Seq Scan on {t}" in plan for t in LARGE):
                scanned.append((page, sql[:160], plan))
    for page, sql, plan in scanned:
        print(page, sql, plan, sep="\n", end="\n\n")
    assert scanned == []


def test_search_finds_whole_values(catalog, backend, admin_client):
    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    sms = Delivery.objects.filter(channel="inbox").first()
    page = admin_client.get(reverse("admin:channels_delivery_changelist") + f"?q={sms.template_code}").content
    assert str(sms.pk).encode() in page
    deliveries = reverse("admin:channels_delivery_changelist")
    by_person = admin_client.get(deliveries + "?q=p-42").context["cl"].result_count
    assert by_person == Delivery.objects.filter(recipient__external_id="p-42").count() > 0
    assert admin_client.get(deliveries + "?q=p-4").context["cl"].result_count == 0  # whole values only
    events = reverse("admin:scenarios_event_changelist")
    assert admin_client.get(events + "?q=9001").context["cl"].result_count == 1  # the consultation's number
    assert admin_client.get(events + "?q=inquiry.paid").context["cl"].result_count == 1
    assert admin_client.get(events + "?q=nothing").context["cl"].result_count == 0


def test_filters_offer_their_values_without_reading_the_table(catalog, backend, admin_client):
    assert backend.post("/api/v1/events", paid_event(), format="json").status_code == 202
    with CaptureQueriesContext(connection) as ctx:
        page = admin_client.get(reverse("admin:channels_delivery_changelist")).content.decode()
        admin_client.get(reverse("admin:scenarios_event_changelist"))
        admin_client.get(reverse("admin:inbox_inboxmessage_changelist"))
    assert not [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SELECT DISTINCT")]
    codes = set(Delivery.objects.values_list("template_code", flat=True))
    assert all(f"template_code={code}" in page for code in codes)
    assert admin_lists.distinct_values(Delivery, "template_code") == sorted(codes)
    assert admin_lists.distinct_values(Event, "client") == ["his"]
    # The value in use is offered even when the latest rows no longer hold it.
    page = admin_client.get(reverse("admin:channels_delivery_changelist") + "?last_error_code=gone_code").content
    assert b"last_error_code=gone_code" in page


def test_the_pager_estimates_when_counting_would_take_longer_than_its_budget(admin_client, monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inbox_inboxmessage (audience, recipient_id, category, title, body, link, actions, "
            "template_code, created_at, source_key) SELECT 'patient', 'p-' || g, 'system', 't', 'b', '{}', '[]', "
            "'x', now(), 's-' || g FROM generate_series(1, 200000) g"
        )
        cursor.execute("ANALYZE inbox_inboxmessage")
    page = reverse("admin:inbox_inboxmessage_changelist")
    exact = admin_client.get(page).context["cl"].result_count
    assert exact == 200_000 and not isinstance(exact, admin_lists.ApproximateCount)

    monkeypatch.setattr(admin_lists, "COUNT_BUDGET_MS", 1)  # no count of 200,000 rows takes 1 ms
    answer = admin_client.get(page)
    count = answer.context["cl"].result_count
    assert isinstance(count, admin_lists.ApproximateCount) and 150_000 < count < 250_000
    assert f"约 {int(count)}" in answer.content.decode()
    with connection.cursor() as cursor:  # the budget did not outlive the count
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"


def test_a_cell_whose_every_try_was_skipped_counts_them_up_to_a_bound(catalog, admin_client, monkeypatch):
    from scenarios import coverage

    monkeypatch.setattr(coverage, "SKIPS_COUNTED", 2)
    now = timezone.now()
    for i in range(3):
        d = Delivery.objects.create(
            channel="app_push",
            idempotency_key=f"skip-{i}",
            status=DeliveryStatus.SKIPPED,
            not_before=now,
            template_code="dc_inquiry_0000006",
            last_error_code="no_address",
        )
        Delivery.objects.filter(pk=d.pk).update(finished_at=now - timedelta(minutes=i))
    page = admin_client.get(reverse("admin:scenarios_scenario_coverage") + "?domain=inquiry").content.decode()
    row = page.split('data-template="dc_inquiry_0000006"')[1].split("</tr>")[0]
    assert 'data-state="skipped_only"' in row and "超过 2 条，全部跳过" in row
    assert InboxMessage.objects.count() == 0


def test_each_large_list_has_its_search_box_and_says_what_it_takes(admin_client):
    for name in (
        "channels_delivery",
        "scenarios_event",
        "scenarios_message",
        "inbox_inboxmessage",
        "channels_providerreceipt",
    ):
        page = admin_client.get(reverse(f"admin:{name}_changelist")).content.decode()
        assert 'id="searchbar"' in page and "整值匹配" in page, name
