"""`manage.py person export|erase AUDIENCE EXTERNAL_ID`: a person's data access or erasure
request (PIPL). Export prints JSON (addresses in full: it is for the person); erase asks for
`--yes` and prints what it did."""

import json

from django.core.management.base import BaseCommand, CommandError

from channels.models import Audience
from scenarios.retention import person_erase, person_export


class Command(BaseCommand):
    help = "Export or erase everything the center holds about one person (PIPL requests)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["export", "erase"])
        parser.add_argument("audience", choices=Audience.values)
        parser.add_argument("external_id")
        parser.add_argument("--yes", action="store_true", help="erase without asking")

    def handle(self, *args, action, audience, external_id, yes, **options):
        if action == "export":
            data = person_export(audience=audience, external_id=external_id)
            if data is None:
                raise CommandError(f"No data about {audience} {external_id}.")
            self.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str))
            return
        if not yes:
            raise CommandError("Erasing cannot be undone: run again with --yes.")
        result = person_erase(audience=audience, external_id=external_id)
        if result is None:
            raise CommandError(f"No data about {audience} {external_id}.")
        self.stdout.write(json.dumps({"erased": f"{audience}:{external_id}", **result}))
