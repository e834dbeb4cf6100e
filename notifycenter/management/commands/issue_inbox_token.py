from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifycenter.auth import INBOX_ROLES, issue_inbox_token


class Command(BaseCommand):
    help = "Print an inbox JWT for a patient, doctor or pharmacist (for local use; HS256 settings only)."

    def add_arguments(self, parser):
        parser.add_argument("--role", required=True, choices=INBOX_ROLES)
        parser.add_argument("--id", required=True, dest="external_id", help="The hospital's id of the person")
        parser.add_argument("--hours", type=float, default=12)

    def handle(self, *args, role, external_id, hours, **options):
        if settings.INBOX_JWT["ALGORITHM"] != "HS256" or not settings.INBOX_JWT["SECRET"]:
            raise CommandError(
                "Tokens can be issued here only with INBOX_JWT_ALGORITHM=HS256 and INBOX_JWT_SECRET set."
            )
        longest = settings.INBOX_JWT.get("MAX_LIFETIME_HOURS", 0)
        if hours <= 0:
            raise CommandError("--hours must be above 0.")
        if longest and hours > longest:
            raise CommandError(
                f"--hours must be at most {longest:g}: INBOX_JWT_MAX_LIFETIME_HOURS refuses longer tokens."
            )
        self.stdout.write(issue_inbox_token(role=role, external_id=external_id, lifetime=timedelta(hours=hours)))
