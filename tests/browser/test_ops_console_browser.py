"""The console as operations staff see it, at 1280 and 1440 px (issue 13): the home page, a list,
a read-only event with its timeline, and the API docs with no network beyond this server."""

from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from notifycenter.groups import groups_sync
from scenarios.models import Event
from tests.clients import backend_client
from tests.factories import paid_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "correct horse battery"
WIDTHS = [1280, 1440]


@pytest.fixture
def ops(catalog, sandbox):
    """An operations editor, and a day with one paid video consultation in it."""
    groups_sync(Group, Permission)
    # Ids as a hospital's tables reach them after a year or two, whatever ran before this test:
    # the lists must still fit (a full suite once pushed three-digit ids past 1280 px).
    with connection.cursor() as cursor:
        for table in ("channels_delivery", "scenarios_event", "scenarios_message"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 12345678)")
    user = User.objects.create_user("yunying", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="operations editor"))
    payload = paid_event(consultation_type="video")
    payload["recipients"]["doctor"] = [{"id": "d-17", "phone": "13812345678", "push_registration_ids": ["1a0018"]}]
    backend = backend_client()
    assert backend.post("/api/v1/events", payload, format="json").status_code == 202
    # A video consultation booked for 35 minutes from now: its doctor reminder is due within the hour.
    soon = (timezone.localtime() + timedelta(minutes=35)).isoformat()
    booked = {
        "event": "inquiry.appointment_booked",
        "idempotency_key": "booked-9002",
        "data": {
            "inquiry_id": "9002",
            "order_no": "IQ202611250002",
            "consultation_type": "video",
            "patient_name": "王五",
            "appointment_time": soon,
        },
        "recipients": {"doctor": ["d-17"]},
    }
    assert backend.post("/api/v1/events", booked, format="json").status_code == 202
    return user


def log_in(page):
    page.goto(f"{page.base}/admin/login/")
    page.fill("#id_username", "yunying")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{page.base}/admin/")


def fits(page, selector: str) -> bool:
    """Nothing cut off or hidden to the right: the element ends inside the window and inside the
    box around it, and the page does not scroll sideways."""
    return page.evaluate(
        f"""() => {{
            const el = document.querySelector({selector!r});
            const box = el.parentElement.getBoundingClientRect();
            const right = el.getBoundingClientRect().right;
            return right <= window.innerWidth && right <= box.right + 1
                && document.documentElement.scrollWidth <= window.innerWidth;
        }}"""
    )


def tallest_header(page) -> float:
    """The tallest column header of the list, in px: one line of text is about 20."""
    return page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('#result_list thead th')]"
        ".map(th => th.getBoundingClientRect().height))"
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_home_page_and_a_list_read_well(page, shot, ops, width):
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page)
    expect(page.locator("#channels-today")).to_contain_text("站内信")
    expect(page.locator("#channels-today tr[data-channel=inbox] .nc-rate")).to_have_text("100%")
    expect(page.locator("#needs-attention")).to_be_visible()
    expect(page.locator("#reminders-next-hour")).to_contain_text("预约问诊即将开始")
    assert fits(page, "#ops-home")
    shot(page, f"home-{width}")

    page.goto(f"{page.base}/admin/scenarios/template/")
    expect(page.locator("#result_list")).to_contain_text("微信服务号模板消息")
    assert "wechat_oa_template" not in page.locator("#result_list").inner_text()
    assert fits(page, "#result_list")
    assert tallest_header(page) < 45  # headers on one line, not two or three characters a line
    shot(page, f"template-list-{width}")

    page.goto(f"{page.base}/admin/channels/delivery/")
    shot(page, f"delivery-list-{width}")
    assert fits(page, "#result_list")
    assert tallest_header(page) < 45

    page.goto(f"{page.base}/admin/scenarios/scenario/coverage/")
    shot(page, f"coverage-{width}")
    expect(page.locator("#coverage-matrix thead")).to_contain_text("微信小程序订阅消息")
    assert fits(page, "#coverage-matrix")


@pytest.mark.parametrize("width", WIDTHS)
def test_an_event_reads_as_a_record_with_its_timeline(page, shot, ops, width):
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page)
    event = Event.objects.get(scenario__code="inquiry.paid")
    page.goto(f"{page.base}/admin/scenarios/event/{event.pk}/change/")
    expect(page.locator("h1")).to_contain_text(f"事件 #{event.pk}：")
    assert page.locator("input[name=_save]").count() == 0 and page.locator(".deletelink").count() == 0
    timeline = page.locator(".nc-timeline tbody tr")
    expect(timeline.first).to_contain_text("收到事件")
    text = page.locator(".nc-timeline").inner_text()
    assert "due " not in text and "no_address" not in text.replace("(no_address)", "")
    assert fits(page, ".nc-timeline")
    shot(page, f"event-{width}")


def test_the_api_docs_render_with_no_network(page, shot, live_server):
    """Every request that leaves this server is refused: Swagger UI must come from our static files."""
    own = urlparse(live_server.url).netloc
    refused = []

    def only_this_server(route):
        if urlparse(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_this_server)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{page.base}/api/docs/")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/events").first).to_be_visible()
    assert refused == []
    shot(page, "api-docs-offline")
