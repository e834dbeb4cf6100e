"""`manage.py reencrypt`: after FIELD_ENCRYPTION_KEYS got a new first key, everything sealed with
the keys re-sealed with it (docs/runbook.md, Rotate the credential key): the channel accounts'
credentials, the webhook endpoints' signing secrets, and the recipient directory (its addresses,
with their hashes recomputed: `directory_rehash`). Rows are written with UPDATE, so nothing else
about them changes. A row no listed key opens is named, left as it is, and the command ends
with status 1: put the key it was sealed with back in the list and run it again."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from channels.addresses import directory_rehash
from channels.models import ChannelAccount
from notifycenter.models import WebhookEndpoint

SEALED = ((ChannelAccount, "credentials", "channel accounts"), (WebhookEndpoint, "signing", "webhook endpoints"))


def reseal(model, field: str) -> tuple[int, list[int]]:
    """(rows re-sealed with the first key, ids of rows no key opens)."""
    done, unreadable = 0, []
    for pk in model.objects.order_by("pk").values_list("pk", flat=True):
        try:
            value = model.objects.filter(pk=pk).values_list(field, flat=True).first()
        except ImproperlyConfigured:
            unreadable.append(pk)
            continue
        done += model.objects.filter(pk=pk).update(**{field: value})
    return done, unreadable


class Command(BaseCommand):
    help = (
        "Re-encrypt channel account credentials, webhook signing secrets and the recipient directory "
        "with the first FIELD_ENCRYPTION_KEYS key (after a rotation)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000, help="directory entries per transaction")

    def handle(self, *args, batch_size, **options):
        failed = []
        for model, field, label in SEALED:
            done, unreadable = reseal(model, field)
            self.stdout.write(f"{label}: {done} re-encrypted.")
            failed += [f"{model._meta.model_name} {pk}" for pk in unreadable]
        entries = directory_rehash(batch_size=batch_size)
        self.stdout.write(f"directory: {entries} entries rehashed and re-encrypted.")
        if failed:
            raise CommandError(
                "No key in FIELD_ENCRYPTION_KEYS opens: " + ", ".join(failed) + ". Put the key they were "
                "sealed with back in the list (after the new one) and run this again."
            )
