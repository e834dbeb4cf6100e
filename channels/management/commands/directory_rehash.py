"""`manage.py directory_rehash`: recompute every recipient's keyed address hashes after
FIELD_HASH_KEY (or SECRET_KEY, when FIELD_HASH_KEY is empty) changed, and re-encrypt the
addresses with the first FIELD_ENCRYPTION_KEYS key (after a key rotation)."""

from django.core.management.base import BaseCommand

from channels.addresses import directory_rehash


class Command(BaseCommand):
    help = "Recompute the recipient directory's address hashes and re-encrypt its addresses with the first key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, batch_size, **options):
        count = directory_rehash(batch_size=batch_size)
        self.stdout.write(f"{count} directory entries rehashed and re-encrypted.")
