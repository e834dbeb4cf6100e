"""Who a broadcast reaches: a list of external ids (checked as the events API checks ids), or a
segment of the recipient directory; and, for each chunk, the directory entries among its ids."""

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext

from channels.models import Channel, Recipient

from .envelope import external_id_problem

LIST_MAX = 100_000  # ids in one broadcast's list (API and admin); more: a segment, or several


def external_ids_problems(ids, *, path: str = "recipients") -> dict[str, list[str]]:
    """Each bad id by its path (`recipients.17`), at most 20; the list's own problem by `path`."""
    if not isinstance(ids, list):
        return {path: [gettext("A list of external ids.")]}
    if not ids:
        return {path: [gettext("At least one external id.")]}
    if len(ids) > LIST_MAX:
        return {
            path: [
                gettext("At most %(n)s ids per broadcast (%(given)s given); send a segment or several.")
                % {"n": LIST_MAX, "given": len(ids)}
            ]
        }
    problems: dict[str, list[str]] = {}
    for index, value in enumerate(ids):
        problem = external_id_problem(value)
        if problem:
            problems[f"{path}.{index}"] = [problem]
            if len(problems) >= 20:
                break
    return problems


def segment_people(audience: str, channel: str):
    """The audience's directory entries, only those with an address on `channel` when given."""
    people = Recipient.objects.filter(audience=audience)
    match channel:
        case Channel.SMS:
            people = people.exclude(phone="")
        case Channel.WECHAT_MINI_SUBSCRIBE:
            people = people.exclude(wechat_mini_openid="")
        case Channel.WECHAT_OA_TEMPLATE:
            people = people.exclude(wechat_oa_openid="")
        case Channel.WECOM_APP:
            people = people.exclude(wecom_userid="")
        case Channel.APP_PUSH:
            people = people.exclude(push_registration_ids=[])
    return people


def directory_entries(audience: str, ids: list[str], *, inbox_only: bool):
    """The directory entries among a chunk's ids: all of them when provider channels need their
    addresses; for the inbox alone only those with saved preferences (the others have nothing a
    policy could read), with the preferences in the same query."""
    people = Recipient.objects.filter(audience=audience)
    if inbox_only:
        people = people.filter(preference__isnull=False).select_related("preference")
    if connection.vendor == "postgresql":  # one array parameter, not thousands; an index scan per id
        table = Recipient._meta.db_table
        any_id = RawSQL(f'"{table}"."external_id" = ANY(%s::text[])', [ids], output_field=BooleanField())  # noqa: S611 (names are ours; ids a parameter)
        return people.filter(any_id)
    return people.filter(external_id__in=ids)
