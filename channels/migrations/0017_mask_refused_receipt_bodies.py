"""The refused provider calls kept so far with their body as it came: an Aliyun or Tencent report
refused as too old (or with a wrong token) kept the phone in clear, a WeChat event the openid
(channels/masking.py, mask_addresses_in_text). Mask them as new ones are kept."""

from django.db import migrations


def mask_bodies(apps, schema_editor):
    from channels.masking import mask_addresses_in_text

    ProviderReceipt = apps.get_model("channels", "ProviderReceipt")
    refused = ProviderReceipt.objects.filter(outcome="refused").exclude(raw=None).only("id", "raw")
    for receipt in refused.iterator(chunk_size=1000):
        body = receipt.raw.get("body") if isinstance(receipt.raw, dict) else None
        masked = mask_addresses_in_text(body) if isinstance(body, str) else body
        if masked != body:
            ProviderReceipt.objects.filter(pk=receipt.pk).update(raw={**receipt.raw, "body": masked})


class Migration(migrations.Migration):
    dependencies = [("channels", "0016_otp_client")]

    operations = [migrations.RunPython(mask_bodies, migrations.RunPython.noop, elidable=True)]
