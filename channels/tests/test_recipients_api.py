import pytest

from channels.models import Recipient, SubscribeConsent
from tests.clients import backend_client

pytestmark = pytest.mark.django_db


def test_put_creates_then_updates_and_answers_masked(backend):
    url = "/api/v1/recipients/patient/p-42"
    created = backend.put(
        url, {"name": "张三", "phone": "13812345678", "wechat_mini_openid": "oMini_abcdefgh12345"}, format="json"
    )
    updated = backend.put(url, {"wechat_oa_openid": "oOA_zyxwvu987654"}, format="json")

    assert (created.status_code, updated.status_code) == (201, 200)
    assert updated.json()["phone"] == "138****5678"
    assert updated.json()["wechat_oa_openid"] == "oOA_****7654"
    person = Recipient.objects.get(audience="patient", external_id="p-42")
    assert (person.phone, person.wechat_oa_openid, person.name) == ("13812345678", "oOA_zyxwvu987654", "张三")


def test_bad_addresses_are_named_and_change_nothing(backend):
    response = backend.put(
        "/api/v1/recipients/doctor/d-17",
        {"phone": "call me", "push_registration_ids": "x", "locale": "fr"},
        format="json",
    )

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"phone", "push_registration_ids", "locale"}
    assert not Recipient.objects.exists()


def test_unknown_audience_is_404_and_scope_is_required(backend):
    assert backend.put("/api/v1/recipients/nurse/n-1", {}, format="json").status_code == 404
    events_only = backend_client(client="x", scopes=("events",))
    response = events_only.put("/api/v1/recipients/patient/p-1", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "missing_scope")


def test_each_accepted_subscription_adds_one_consent(backend):
    url = "/api/v1/recipients/patient/p-42/subscriptions"
    backend.post(url, {"template_ids": ["tmpl-call", "tmpl-accept"]}, format="json")
    response = backend.post(url, {"template_ids": ["tmpl-call"]}, format="json")

    assert response.json()["consents"] == {"tmpl-call": 2, "tmpl-accept": 1}
    assert SubscribeConsent.objects.get(template_id="tmpl-call").remaining == 2
    assert backend.post(url, {"template_ids": []}, format="json").json()["fields"] == {
        "template_ids": ["Ensure this field has at least 1 elements."]
    }
