"""An event's recipients are checked by one function (scenarios.envelope.recipients_problems) for
the events API and the recurring broadcasts' form, and a broadcast list's ids by the same id
check: the same input gets the same paths everywhere, in English from the API and in the
reader's language in the console."""

import pytest
from django.utils import translation

from scenarios.audiences import external_ids_problems
from scenarios.broadcasts import recurring_broadcast_problems
from scenarios.limits import RECIPIENTS_PER_EVENT
from scenarios.models import Event, Scenario
from tests.factories import paid_event

pytestmark = pytest.mark.django_db

MIXED = {
    "nurse": ["n-1"],  # no such audience
    # empty, a number (kept), a boolean, too long, a list (NUL bytes: refused before, anywhere in an item)
    "patient": ["p-1", "", 5, True, "x" * 65, ["p-2"]],
    "doctor": "d-17",  # not a list
}


def refused_fields(backend, recipients) -> dict:
    response = backend.post("/api/v1/events", {**paid_event(key="r"), "recipients": recipients}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert not Event.objects.exists()
    return response.json()["fields"]


def test_the_api_and_a_recurring_broadcast_name_the_same_paths(catalog, backend):
    fields = refused_fields(backend, MIXED)
    with translation.override("en"):
        problems = recurring_broadcast_problems(
            scenario=Scenario.objects.get(code="inquiry.paid"), data=paid_event()["data"], recipients=MIXED
        )

    expected = {
        "recipients.nurse",
        "recipients.doctor",
        "recipients.patient.1",
        "recipients.patient.3",
        "recipients.patient.4",
        "recipients.patient.5",
    }
    assert set(fields) == expected
    same = expected - {"recipients.patient.3", "recipients.patient.5"}
    assert {path: problems[path] for path in same} == {path: fields[path] for path in same}
    # where the API takes an object with inline addresses instead, its words say so; a stored broadcast takes ids only
    assert fields["recipients.patient.3"] == ["Expected an external id (a string) or an object with an id."]
    assert problems["recipients.patient.3"] == ["Expected an external id (a string)."]
    assert fields["recipients.patient.4"] == ["An external id has 1 to 64 characters."]


def test_recipients_that_are_not_an_object_are_named(catalog, backend):
    fields = refused_fields(backend, ["p-1"])

    assert fields == {"recipients": ['An object: audience → external ids, e.g. {"patient": ["p-1"]}.']}


def test_too_many_recipients_are_refused_whole_with_the_count(catalog, backend):
    too_many = {"patient": [f"p-{n}" for n in range(RECIPIENTS_PER_EVENT)], "doctor": ["d-1", ""]}

    fields = refused_fields(backend, too_many)

    assert list(fields) == ["recipients"]  # not each entry as well
    assert f"({RECIPIENTS_PER_EVENT + 2} given)" in fields["recipients"][0]


def test_inline_addresses_are_still_cleaned_and_kept(catalog, backend):
    event = paid_event(key="inline")
    event["recipients"] = {"patient": [{"id": "p-42", "phone": "13812345678", "name": " 张三 "}], "doctor": ["d-17"]}

    assert backend.post("/api/v1/events", event, format="json").status_code == 202

    from channels.models import Recipient

    kept = Recipient.objects.get(audience="patient", external_id="p-42")
    assert (kept.phone, kept.name) == ("13812345678", "张三")  # as RecipientInput cleans them (trimmed)


def test_a_broadcast_lists_bad_ids_are_named_in_the_consoles_language():
    with translation.override("zh-hans"):
        problems = external_ids_problems(["ok", "x" * 65, None])

    assert set(problems) == {"recipients.1", "recipients.2"}
    assert all("外部ID" in words[0] for words in problems.values()), problems
