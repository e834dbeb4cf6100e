"""An event's envelope (event, idempotency key, occurred_at, subject, data, recipients) checked
without building DRF's serializer for the usual shape of it.

`EventInput` (scenarios/apis.py) is the definition: its errors are the API's answer. Building it
per event (fields deep-copied, each run through its validators) was a sixth of a batch's CPU.
`envelope_fast` accepts what EventInput certainly accepts, and gives exactly its validated data;
anything else (a problem, inline addresses, an unknown shape) is None, and EventInput decides, with
its own errors. scenarios/tests/test_envelope.py compares both on good and bad bodies.
"""

from django.utils.translation import gettext
from rest_framework import serializers

from .limits import ID_MAX_LENGTH, RECIPIENTS_PER_EVENT, YEARS_AHEAD, data_size_problem, string_problem, value_problems
from .planning import date_in_range

AUDIENCES = ("patient", "doctor", "pharmacist", "operations")
EVENT_MAX, KEY_MAX, SUBJECT_TYPE_MAX, SUBJECT_ID_MAX = 64, 128, 32, 64


def external_id_problem(value, *, or_object: bool = False) -> str:
    """An external id as the directory keeps it: a string or an integer, 1 to 64 characters
    (`or_object`: where an object with an id and addresses may stand instead, the words say so)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        if or_object:
            return gettext("Expected an external id (a string) or an object with an id.")
        return gettext("Expected an external id (a string).")
    text = str(value)
    if not text or len(text) > ID_MAX_LENGTH:
        return gettext("An external id has 1 to %(n)s characters.") % {"n": ID_MAX_LENGTH}
    return string_problem(text)


def recipients_problems(recipients, *, inline=None, prefix: str = "") -> dict[str, list[str]]:
    """An event's recipients checked whole, every problem by its path under `prefix` (the whole
    value's own under `prefix` itself): an object of known audiences, each a list of external
    ids, at most RECIPIENTS_PER_EVENT in all. An object entry (an id with inline addresses) is
    judged by `inline(path, entry)`, which answers its problems; without `inline` (a stored
    broadcast: addresses belong in the directory, where the API checks them) it is refused.
    The events API (RecipientsField) and the recurring broadcasts' form both ask this."""

    def at(*parts) -> str:
        return ".".join(str(p) for p in (prefix, *parts) if p != "")

    if not isinstance(recipients, dict):
        return {at(): [gettext('An object: audience → external ids, e.g. {"patient": ["p-1"]}.')]}
    total = sum(len(entries) for entries in recipients.values() if isinstance(entries, list))
    if total > RECIPIENTS_PER_EVENT:  # before looking at each: a list this long is refused whole
        return {
            at(): [
                gettext(
                    "At most %(n)s recipients per event (%(given)s given); larger audiences: a broadcast to a list "
                    "or a segment."
                )
                % {"n": RECIPIENTS_PER_EVENT, "given": total}
            ]
        }
    problems: dict[str, list[str]] = {}
    for audience, entries in recipients.items():
        if audience not in AUDIENCES:
            problems[at(audience)] = [gettext("Unknown audience.")]
        elif not isinstance(entries, list):
            problems[at(audience)] = [gettext("A list of external ids.")]
        else:
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    problem = external_id_problem(entry, or_object=inline is not None)
                    if problem:
                        problems[at(audience, index)] = [problem]
                elif inline is None:
                    problems[at(audience, index)] = [gettext("An external id (addresses: in the recipient directory).")]
                else:
                    problem = external_id_problem(entry.get("id"))
                    if problem:
                        problems[at(audience, index, "id")] = [problem]
                    problems.update(inline(at(audience, index), entry))
    return problems


def date_in_range_check(value):
    """occurred_at's validator (EventInput's and the fast path's)."""
    if not date_in_range(value):
        raise serializers.ValidationError(f"Out of range: at most {YEARS_AHEAD} years ahead or 100 years back.")
    return value


# The same field EventInput declares; only run on a value, never bound to a serializer.
_OCCURRED_AT = serializers.DateTimeField(required=False, validators=[date_in_range_check])


def envelope_fast(item) -> dict | None:
    """EventInput's validated data for `item`, or None when EventInput has to look at it."""
    if not isinstance(item, dict) or value_problems(item):
        return None
    out = {}
    for name, limit in (("event", EVENT_MAX), ("idempotency_key", KEY_MAX)):
        value = item.get(name)
        if not _plain_text(value, limit):
            return None
        out[name] = value
    if "occurred_at" in item:
        try:
            out["occurred_at"] = _OCCURRED_AT.run_validation(item["occurred_at"])
        except serializers.ValidationError:
            return None
    if "subject" in item:
        subject = item["subject"]
        if not (
            isinstance(subject, dict)
            and set(subject) == {"type", "id"}
            and _plain_text(subject["type"], SUBJECT_TYPE_MAX)
            and _plain_text(subject["id"], SUBJECT_ID_MAX)
        ):
            return None
        out["subject"] = {"type": subject["type"], "id": subject["id"]}
    data = item.get("data", {})
    if not isinstance(data, dict) or data_size_problem(data):
        return None
    out["data"] = dict(data)
    recipients = _plain_recipients(item.get("recipients", {}))
    if recipients is None:
        return None
    out["recipients"] = recipients
    return out


def _plain_text(value, limit: int) -> bool:
    # CharField trims whitespace and refuses blanks: a value it would change goes to it.
    return type(value) is str and 0 < len(value) <= limit and value == value.strip()


def _plain_recipients(recipients) -> dict | None:
    """audience → external ids, as RecipientsField gives them; None for objects with inline
    addresses (RecipientInput checks those) and anything it would refuse."""
    if not isinstance(recipients, dict):
        return None
    out, total = {}, 0
    for audience, entries in recipients.items():
        if audience not in AUDIENCES or type(entries) is not list:
            return None
        for entry in entries:
            if isinstance(entry, dict) or external_id_problem(entry):
                return None
        total += len(entries)
        out[audience] = list(entries)
    return out if total <= RECIPIENTS_PER_EVENT else None
