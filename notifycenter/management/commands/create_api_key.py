from django.core.management.base import BaseCommand, CommandError

from notifycenter.models import SCOPES, ApiKey


class Command(BaseCommand):
    help = "Create an API key for a hospital backend. The key is printed once and stored only hashed."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. his-prod-1")
        parser.add_argument("--client", help="The backend it belongs to (idempotency is per client); default: NAME")
        parser.add_argument("--scopes", nargs="+", default=["events", "recipients"], choices=SCOPES)
        parser.add_argument("--quiet", action="store_true", help="Print the key alone")

    def handle(self, *args, name, client, scopes, quiet, **options):
        try:
            key, raw = ApiKey.generate(client=client or name, name=name, scopes=scopes)
        except ValueError as err:
            raise CommandError(str(err)) from err
        if quiet:
            self.stdout.write(raw)
            return
        self.stdout.write(f"API key for {key.client}/{key.name}, scopes {', '.join(key.scopes)}:")
        self.stdout.write(raw)
        self.stdout.write("It is not stored: keep it now. Use it as the header  Authorization: Api-Key <key>")
