"""`manage.py person export|erase AUDIENCE EXTERNAL_ID`, or `--phone P` / `--openid O` to find
the person by an address (through the directory's keyed hashes: every entry holding it, e.g. a
patient and the entry their SMS codes went to): a person's data access or erasure request
(PIPL). Export prints JSON (addresses in full: it is for the person); erase asks for `--yes` and
prints what it did. Each request leaves a log line (logger `notifycenter.pipl`): who ran it, on
whom, and what it found or did, the record of processing an auditor asks for."""

import getpass
import json
import logging
import os

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from channels.addresses import recipients_find
from channels.masking import mask_id, mask_phone
from channels.models import Audience
from notifycenter.models import PersonRequest
from scenarios.retention import person_erase, person_export

OPENIDS = ("wechat_mini_openid", "wechat_oa_openid", "wechat_unionid", "wecom_userid")
logger = logging.getLogger("notifycenter.pipl")


def operator() -> str:
    """Who runs the command: the login behind sudo, else the process's user."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


class Command(BaseCommand):
    help = "Export or erase everything the center holds about one person (PIPL requests)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["export", "erase"])
        parser.add_argument("audience", nargs="?", choices=Audience.values)
        parser.add_argument("external_id", nargs="?")
        parser.add_argument("--phone", help="find the person by a full phone number")
        parser.add_argument("--openid", help="find the person by a full openid, unionid or WeCom user id")
        parser.add_argument("--yes", action="store_true", help="erase without asking")
        parser.add_argument(
            "--by", default="", help="who asked for it (a name, a ticket number), for the log line; default: your login"
        )

    def handle(self, *args, action, audience, external_id, phone, openid, yes, by, **options):
        people = self.people(audience, external_id, phone, openid)
        asked = self.asked(audience, external_id, phone, openid)
        if action == "export":
            found = {f"{a}:{i}": person_export(audience=a, external_id=i) for a, i in people}
            found = {k: v for k, v in found.items() if v is not None}
            self.audit("export", asked, by, list(found))
            if not found:
                raise CommandError(f"No data about {self.named(audience, external_id, phone, openid)}.")
            data = next(iter(found.values())) if audience else found
            self.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str))
            return
        if not yes:
            raise CommandError("Erasing cannot be undone: run again with --yes.")
        with transaction.atomic():  # the erasure and its record commit together
            results = [(a, i, person_erase(audience=a, external_id=i)) for a, i in people]
            results = [(a, i, r) for a, i, r in results if r is not None]
            self.audit("erase", asked, by, [f"{a}:{i}" for a, i, _ in results])
        if not results:
            raise CommandError(f"No data about {self.named(audience, external_id, phone, openid)}.")
        for a, i, result in results:
            self.stdout.write(json.dumps({"erased": f"{a}:{i}", **result}))

    def people(self, audience, external_id, phone, openid) -> list[tuple[str, str]]:
        if sum(bool(x) for x in (external_id, phone, openid)) != 1 or bool(audience) != bool(external_id):
            raise CommandError("Name the person by AUDIENCE EXTERNAL_ID, or by --phone, or by --openid.")
        if external_id:
            return [(audience, external_id)]
        entries = (
            recipients_find(field="phone", value=phone)
            if phone
            else [r for field in OPENIDS for r in recipients_find(field=field, value=openid)]
        )
        return list(dict.fromkeys((r.audience, r.external_id) for r in entries))

    def named(self, audience, external_id, phone, openid) -> str:
        return f"{audience} {external_id}" if external_id else "that phone" if phone else "that openid"

    def asked(self, audience, external_id, phone, openid) -> str:
        """Whom the request named, for the log line: a phone or an openid masked."""
        if external_id:
            return f"{audience}:{external_id}"
        return f"phone {mask_phone(phone)}" if phone else f"openid {mask_id(openid)}"

    def audit(self, action: str, asked: str, by: str, entries: list[str]) -> None:
        """The record of one request (a PersonRequest row, shown in the console, and a log line),
        written before the answer is printed (an export that fails to print was still read):
        what was asked, by whom, which entries it touched."""
        run_by = operator()
        PersonRequest.objects.create(action=action, asked=asked, entries=entries, requested_by=by, run_by=run_by)
        logger.info("PIPL %s of %s by %s: %s", action, asked, by or run_by, ", ".join(entries) or "nothing held")
