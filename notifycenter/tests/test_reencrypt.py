"""`manage.py reencrypt` after a key rotation: every sealed value opens with the new key alone
(channel account credentials, webhook signing secrets, the directory); a row no key opens is
named and the command fails, the others done."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from channels.models import ChannelAccount, Recipient
from channels.services import recipient_put
from notifycenter.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def test_after_reencrypt_the_old_key_can_go(settings):
    account = ChannelAccount.objects.create(name="sms", channel="sms", provider="aliyun", credentials={"a": "1"})
    endpoint = WebhookEndpoint.objects.create(client="his", url="https://his.example.cn/h", signing={"secret": "s"})
    person, _ = recipient_put(audience="patient", external_id="p-1", phone="13812345678")
    old = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *old]

    call_command("reencrypt", verbosity=0)

    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]  # the old key dropped
    assert ChannelAccount.objects.get(pk=account.pk).credentials == {"a": "1"}
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == "s"
    assert Recipient.objects.get(pk=person.pk).phone == "13812345678"


def test_a_row_no_key_opens_is_named_and_the_rest_is_done(settings):
    good = WebhookEndpoint.objects.create(client="his", url="https://his.example.cn/a", signing={"secret": "a"})
    lost = WebhookEndpoint.objects.create(client="his", url="https://his.example.cn/b", signing={"secret": "b"})
    stranger = Fernet(Fernet.generate_key()).encrypt(b'{"secret": "b"}').decode()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE notifycenter_webhookendpoint SET signing = %s WHERE id = %s", [stranger, lost.pk])
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FIELD_ENCRYPTION_KEYS]

    with pytest.raises(CommandError, match=f"webhookendpoint {lost.pk}"):
        call_command("reencrypt", verbosity=0)

    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    assert WebhookEndpoint.objects.get(pk=good.pk).secret == "a"
