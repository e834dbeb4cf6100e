"""A binding's JPush vendor fields (scenarios) reach the push (channels), through a real event."""

import io

import pytest
from django.core.management import call_command

from channels.models import ChannelAccount
from scenarios.models import ChannelBinding
from tests.factories import paid_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_bindings_vendor_fields_reach_the_push_of_an_event(catalog, backend, fake_providers):
    call_command("bootstrap_local", stdout=io.StringIO())  # the sandbox accounts, JPush among them
    ChannelAccount.objects.filter(channel="app_push").update(
        options={"third_party_channel": {"huawei": {"importance": "NORMAL", "category": "WORK"}}}
    )
    ChannelBinding.objects.filter(template__code="dc_inquiry_0000001", channel="app_push").update(
        options={"third_party_channel": {"huawei": {"category": "IM"}, "xiaomi": {"channel_id": "120001"}}}
    )
    event = paid_event()
    event["recipients"] = {"patient": ["p-42"], "doctor": [{"id": "d-17", "push_registration_ids": ["1a0018970aa"]}]}

    response = backend.post("/api/v1/events", event, format="json")
    assert response.status_code == 202, response.json()

    (push,) = fake_providers.calls("/v3/push")
    assert push["body"]["options"]["classification"] == 1
    assert push["body"]["options"]["third_party_channel"] == {
        "huawei": {"importance": "NORMAL", "category": "IM"},  # the binding's category over the account's
        "xiaomi": {"channel_id": "120001"},
    }
