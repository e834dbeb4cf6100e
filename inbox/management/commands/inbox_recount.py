from django.core.management.base import BaseCommand

from inbox.selectors import inbox_owners
from inbox.services import inbox_counter_recount


class Command(BaseCommand):
    help = "Recompute the inbox counters from the messages (one person, an audience, or everyone)."

    def add_arguments(self, parser):
        parser.add_argument("--audience")
        parser.add_argument("--id", dest="recipient_id", help="one person (with --audience)")

    def handle(self, *args, audience=None, recipient_id=None, **options):
        if recipient_id and not audience:
            self.stderr.write("--id needs --audience")
            return
        owners = [(audience, recipient_id)] if recipient_id else inbox_owners(audience=audience).iterator()
        checked = fixed = 0
        for owner_audience, owner_id in owners:
            checked += 1
            # One short transaction per person: live writes go on meanwhile.
            fixed += inbox_counter_recount(audience=owner_audience, recipient_id=owner_id)
        self.stdout.write(f"checked {checked} people, corrected {fixed}")
