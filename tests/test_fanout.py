"""A membership broadcast, the kind operations staff add in the admin without code: one event to
thousands of people writes its rows in bulk, not a transaction per person."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.models import Delivery
from inbox.models import InboxMessage
from scenarios.intake import event_accept
from scenarios.models import ChannelBinding, Rule, Scenario, Template

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 3000


@pytest.fixture
def broadcast(db):
    scenario = Scenario.objects.create(
        code="membership.renewal_offer",
        name="会员续费优惠",
        domain="membership",
        data_schema={"type": "object", "required": ["discount"], "properties": {"discount": {"type": "string"}}},
    )
    template = Template.objects.create(
        code="pt_member_0000001",
        name="续费优惠",
        audience="patient",
        category="system",
        title="会员续费优惠",
        body="会员续费限时{{ discount }}折，欢迎续费。",
    )
    ChannelBinding.objects.create(template=template, channel="inbox")
    Rule.objects.create(scenario=scenario, code="all_members", audience="patient", template=template)


def test_one_event_to_thousands_writes_in_bulk(broadcast):
    """The broadcast path (scenarios.broadcasts, the admin's recurring broadcasts) goes through the
    same intake as the API, without the API's 1,000 recipients per event."""
    people = [f"m-{i}" for i in range(PEOPLE)]
    with CaptureQueriesContext(connection) as queries:
        answer, created = event_accept(
            client="recurring-broadcasts",
            payload={
                "event": "membership.renewal_offer",
                "idempotency_key": "renewal-2026-11",
                "data": {"discount": "8"},
                "recipients": {"patient": people},
            },
        )

    assert created
    assert answer["message_count"] == PEOPLE
    assert len(answer["messages"]) == 100
    assert InboxMessage.objects.filter(template_code="pt_member_0000001").count() == PEOPLE
    assert Delivery.objects.filter(status="sent").count() == PEOPLE
    assert InboxMessage.objects.get(recipient_id="m-1234").body == "会员续费限时8折，欢迎续费。"
    # Intake and the 15 inbox tasks (200 rows each) that ran on commit, all together: a few
    # statements per 2,000 rows and per task (each task writes its messages, the people's
    # counters and their live events: one statement each; and with each bulk write of deliveries,
    # its status-change rows, channels/timeline.py), not one per person.
    assert len(queries) < 190, len(queries)


def test_the_api_sends_thousands_to_the_broadcast_path(broadcast, backend):
    response = backend.post(
        "/api/v1/events",
        {
            "event": "membership.renewal_offer",
            "idempotency_key": "renewal-2026-12",
            "data": {"discount": "8"},
            "recipients": {"patient": [f"m-{i}" for i in range(PEOPLE)]},
        },
        format="json",
    )

    assert response.status_code == 400
    assert "broadcast" in response.json()["fields"]["recipients"][0]
    assert not InboxMessage.objects.exists()
