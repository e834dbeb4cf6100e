"""The recipient directory as the one place addresses live: encrypted at rest with the field
keys, found by keyed hash, filled into deliveries in memory only, masked everywhere else."""

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels.addresses import deliveries_fill_addresses, directory_rehash, recipients_find, recipients_matching
from channels.fields import keyed_hash
from channels.masking import scrub
from channels.models import Delivery, DeliveryStatus, Recipient
from channels.sending import delivery_send
from channels.services import DeliveryRequest, deliveries_create, recipient_put, recipients_resolve

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "13812345678"
OPENID = "oOA-p42-openid-0001"
TEST_KEY = "dGVzdC1vbmx5LWtleS0zMi1ieXRlcy1sb25nLTAwMDA="


def stored(pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM channels_recipient WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_addresses_are_fernet_tokens_in_the_table_and_clear_in_python():
    person, _ = recipient_put(
        audience="patient", external_id="p-42", phone=PHONE, wechat_oa_openid=OPENID, push_registration_ids=["r1"]
    )
    for column in ("phone", "wechat_oa_openid", "push_registration_ids"):
        assert stored(person.pk, column).startswith("gAAAA")
    assert PHONE not in stored(person.pk, "phone")
    assert stored(person.pk, "wechat_mini_openid") == ""  # no address: nothing, not a token of ""
    again = Recipient.objects.get(pk=person.pk)
    assert (again.phone, again.wechat_oa_openid, again.push_registration_ids) == (PHONE, OPENID, ["r1"])
    assert stored(person.pk, "phone_hash") == keyed_hash("phone", PHONE) != keyed_hash("wechat_oa_openid", PHONE)


def test_every_way_of_writing_an_address_keeps_its_hash():
    recipient_put(audience="patient", external_id="p-1", phone=PHONE)  # update_or_create: create
    recipient_put(audience="patient", external_id="p-1", phone="13900000000")  # update, by update_fields
    recipients_resolve(named={"patient": [{"id": "p-2", "phone": PHONE}]})  # bulk insert
    recipients_resolve(named={"patient": [{"id": "p-1", "wechat_oa_openid": OPENID}]})  # inline update
    assert [r.external_id for r in recipients_find(field="phone", value=f"+86{PHONE}")] == ["p-2"]
    assert [r.external_id for r in recipients_find(field="phone", value="13900000000")] == ["p-1"]
    assert [r.external_id for r in recipients_find(field="wechat_oa_openid", value=OPENID)] == ["p-1"]
    assert recipients_find(field="phone", value="") == []


def test_a_row_saved_untouched_keeps_its_token_and_hash():
    person, _ = recipient_put(audience="patient", external_id="p-42", phone=PHONE)
    token = stored(person.pk, "phone")
    loaded = Recipient.objects.get(pk=person.pk)
    loaded.name = "张三"
    loaded.save()
    assert (stored(person.pk, "phone"), stored(person.pk, "phone_hash")) == (token, keyed_hash("phone", PHONE))


def test_key_rotation_and_a_new_hash_key_with_directory_rehash(settings):
    person, _ = recipient_put(audience="patient", external_id="p-42", phone=PHONE, wechat_oa_openid=OPENID)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, TEST_KEY]
    settings.FIELD_HASH_KEY = "a-new-hash-key"
    assert Recipient.objects.get(pk=person.pk).phone == PHONE  # the old key still decrypts
    assert recipients_find(field="phone", value=PHONE) == []  # stale hashes until the rehash

    assert directory_rehash(batch_size=1) == 1

    assert [r.pk for r in recipients_find(field="phone", value=PHONE)] == [person.pk]
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key retired: rows were re-encrypted
    assert Recipient.objects.get(pk=person.pk).wechat_oa_openid == OPENID


def request(person, key="k1", channel="wechat_oa_template"):
    content = {
        "title": "医生已接诊",
        "body": "李明医生已接诊您的问诊。",
        "template_id": "tmpl-1",
        "params": {"thing1": "李明"},
    }
    return DeliveryRequest(channel=channel, recipient=person, content=content, idempotency_key=key)


def test_a_delivery_keeps_the_address_masked_and_sends_to_the_directorys(fake_providers, oa):
    person, _ = recipient_put(audience="patient", external_id="p-42", wechat_oa_openid=OPENID)
    later = replace(request(person), not_before=timezone.now() + timedelta(hours=1))
    (delivery,) = deliveries_create(requests=[later])
    assert Delivery.objects.get(pk=delivery.pk).address == "oOA-****0001"

    # The person's openid changed before the send: the directory is the truth.
    recipient_put(audience="patient", external_id="p-42", wechat_oa_openid="oOA-p42-openid-0002")
    Delivery.objects.filter(pk=delivery.pk).update(not_before=timezone.now())
    delivery_send(delivery_id=delivery.pk)

    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SENT
    assert fake_providers.calls("/message/template/send")[-1]["body"]["touser"] == "oOA-p42-openid-0002"
    assert Delivery.objects.get(pk=delivery.pk).address == "oOA-****0001"


def test_the_real_address_is_filled_with_one_query_and_never_saved(oa):
    people = [
        recipient_put(audience="patient", external_id=f"p-{i}", wechat_oa_openid=f"{OPENID}-{i}")[0] for i in range(5)
    ]
    created = deliveries_create(requests=[request(p, key=f"k{i}") for i, p in enumerate(people)])
    loaded = list(Delivery.objects.filter(pk__in=[d.pk for d in created]).order_by("pk"))
    with CaptureQueriesContext(connection) as queries:
        deliveries_fill_addresses(loaded)
    assert len(queries) == 1
    assert [d.address for d in loaded] == [f"{OPENID}-{i}" for i in range(5)]
    with_people = list(Delivery.objects.filter(pk__in=[d.pk for d in created]).select_related("recipient"))
    with CaptureQueriesContext(connection) as queries:
        deliveries_fill_addresses(with_people)
    assert len(queries) == 0

    loaded[0].last_error_code = "x"
    loaded[0].save()  # a full save of a filled delivery
    assert loaded[0].address == f"{OPENID}-0"  # still real in memory for the backend
    assert Delivery.objects.get(pk=loaded[0].pk).address == "oOA-****01-0"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_delivery WHERE address LIKE %s", [f"%{OPENID}%"])
        assert cursor.fetchone()[0] == 0


def test_an_erased_person_has_no_address_to_fill(oa):
    person, _ = recipient_put(audience="patient", external_id="p-42", wechat_oa_openid=OPENID)
    (delivery,) = deliveries_create(requests=[request(person)])
    Recipient.objects.filter(pk=person.pk).update(wechat_oa_openid="", wechat_oa_openid_hash="")
    loaded = Delivery.objects.get(pk=delivery.pk)
    deliveries_fill_addresses([loaded])
    assert loaded.address == ""
    robot = Delivery(channel="wecom_robot", recipient=None)
    deliveries_fill_addresses([robot])
    assert robot.address == "robot"


def test_provider_answers_are_kept_with_the_address_masked():
    answer = {"Response": {"SendStatusSet": [{"PhoneNumber": f"+86{PHONE}", "Code": "Ok"}]}}
    assert json.dumps(scrub(answer, PHONE, "sms")).count("+86138****5678") == 1
    assert scrub({"invaliduser": "LiMing|other"}, "LiMing", "wecom_app") == {"invaliduser": "Li****|other"}


def test_the_admin_shows_addresses_masked_finds_them_by_hash_and_takes_new_ones(admin_client):
    person, _ = recipient_put(audience="patient", external_id="p-42", phone=PHONE, wechat_oa_openid=OPENID)
    recipient_put(audience="patient", external_id="p-43", phone="13900000000")

    listing = admin_client.get(reverse("admin:channels_recipient_changelist")).content.decode()
    assert "138****5678" in listing and "139****0000" in listing and PHONE not in listing
    found = admin_client.get(reverse("admin:channels_recipient_changelist"), {"q": f"+86{PHONE}"}).content.decode()
    assert "p-42" in found and "p-43" not in found
    assert recipients_matching(OPENID) == [person.pk]

    url = reverse("admin:channels_recipient_change", args=[person.pk])
    page = admin_client.get(url).content.decode()
    assert PHONE not in page and OPENID not in page
    assert "138****5678" in page and "oOA-****0001" in page

    form = {
        "audience": "patient",
        "external_id": "p-42",
        "name": "张三",
        "locale": "zh-hans",
        "new_phone": "13700000000",
        "clear_addresses": ["wechat_oa_openid"],
        **{f"{prefix}-{k}": v for prefix in ("consents", "preference") for k, v in MANAGEMENT.items()},
    }
    answer = admin_client.post(url, form)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    person = Recipient.objects.get(pk=person.pk)
    assert (person.phone, person.wechat_oa_openid) == ("13700000000", "")
    assert [r.pk for r in recipients_find(field="phone", value="13700000000")] == [person.pk]
    assert recipients_find(field="wechat_oa_openid", value=OPENID) == []

    bad = admin_client.post(url, {**form, "new_phone": "call me"})
    assert bad.status_code == 200 and Recipient.objects.get(pk=person.pk).phone == "13700000000"


MANAGEMENT = {"TOTAL_FORMS": "0", "INITIAL_FORMS": "0", "MIN_NUM_FORMS": "0", "MAX_NUM_FORMS": "1000"}
