"""Template buttons, from the scenarios layer to the inbox list and back (they span both layers,
so they are tested here, above them)."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from inbox.models import InboxActionPress
from scenarios.models import Template
from tests.factories import paid_event


@pytest.mark.django_db(transaction=True)
def test_template_buttons_reach_the_list_per_platform_and_a_press_is_recorded(catalog, backend, patient_app):
    template = Template.objects.get(code="pt_inquiry_0000001")
    template.buttons = [{"key": "view", "label": "查看问诊", "style": "primary", "link": template.link.code}]
    template.full_clean()
    template.save()
    backend.post("/api/v1/events", paid_event(), format="json")

    (message,) = patient_app.get("/api/v1/inbox/messages?platform=app").json()["results"]
    (action,) = message["actions"]
    assert (action["key"], action["label"], action["style"]) == ("view", "查看问诊", "primary")
    assert action["link"]["platform"] == "app"
    assert action["link"]["url"] == message["link"]["url"]
    assert action["link"]["url"]

    pressed = patient_app.post(f"/api/v1/inbox/messages/{message['id']}/actions/view?platform=app")
    unknown = patient_app.post(f"/api/v1/inbox/messages/{message['id']}/actions/cancel")

    assert pressed.status_code == 200
    assert pressed.json()["unread"] is False
    assert unknown.status_code == 404
    press = InboxActionPress.objects.get()
    assert (press.message_id, press.key, press.platform) == (message["id"], "view", "app")


@pytest.mark.django_db
def test_a_template_has_at_most_two_valid_buttons(catalog):
    template = Template.objects.get(code="pt_inquiry_0000001")
    button = {"key": "a", "label": "好", "link": template.link.code}
    template.buttons = [button, {**button, "key": "b"}, {**button, "key": "c"}]
    with translation.override("en"), pytest.raises(ValidationError) as three:
        template.full_clean()
    template.buttons = [{**button, "link": "no-such-page", "style": "loud"}, button]
    with translation.override("en"), pytest.raises(ValidationError) as bad:
        template.full_clean()

    assert three.value.message_dict["buttons"] == ["At most two buttons."]
    assert len(bad.value.message_dict["buttons"]) == 3  # bad style, unknown link, repeated key
