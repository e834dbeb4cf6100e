"""Seen, read, archived; the per-person counters and their repair; a button pressed on a message."""

import random
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from inbox.models import Category, InboxActionPress, InboxCounter, InboxEvent, InboxMessage
from inbox.selectors import inbox_counts, inbox_counts_truth
from inbox.services import (
    inbox_message_put,
    inbox_messages_mark,
    inbox_messages_purge,
    inbox_messages_put_many,
)

PEOPLE = [("patient", "p-1"), ("patient", "p-2"), ("doctor", "p-1")]


def row(audience, recipient_id, key, category="consultation"):
    return {
        "audience": audience,
        "recipient_id": recipient_id,
        "title": "标题",
        "body": "正文",
        "category": category,
        "link": {},
        "source_key": key,
    }


@pytest.mark.django_db(transaction=True)
def test_counters_equal_the_truth_after_random_concurrent_operations():
    """Eight threads, 40 random writes each (new messages one by one and in fan-outs that repeat
    keys, seen/read/archive/delete by ids, by category and all, purges), then each person's
    counter is compared with a count of their messages."""
    errors = []

    def worker(n):
        rng = random.Random(n)
        try:
            for i in range(40):
                audience, recipient_id = rng.choice(PEOPLE)
                category = rng.choice(Category.values)
                op = rng.random()
                if op < 0.3:
                    inbox_message_put(**row(audience, recipient_id, f"k{n}-{i}", category))
                elif op < 0.45:
                    # Keys shared between threads: the same fan-out row written twice is one row.
                    inbox_messages_put_many(
                        [row(a, r, f"fan-{i % 7}-{a}-{r}", category) for a, r in rng.sample(PEOPLE, 2)]
                    )
                elif op < 0.9:
                    ids = list(
                        InboxMessage.objects.filter(audience=audience, recipient_id=recipient_id).values_list(
                            "id", flat=True
                        )
                    )
                    how = rng.choice(["ids", "category", "all"])
                    inbox_messages_mark(
                        audience=audience,
                        recipient_id=recipient_id,
                        action=rng.choice(["seen", "read", "archive", "delete"] if how == "ids" else ["seen", "read"]),
                        ids=rng.sample(ids, min(len(ids), 3)) if how == "ids" else None,
                        category=category if how == "category" else None,
                    )
                else:
                    InboxMessage.objects.filter(pk__in=InboxMessage.objects.order_by("?").values("pk")[:2]).update(
                        created_at=timezone.now() - timedelta(days=400)
                    )
                    inbox_messages_purge(older_than_days=365, batch_size=3)
        except Exception as err:  # reported below, with the thread's number
            errors.append((n, err))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert InboxMessage.objects.count() > 20  # the sequence did write
    for audience, recipient_id in PEOPLE:
        assert inbox_counts(audience=audience, recipient_id=recipient_id) == inbox_counts_truth(
            audience=audience, recipient_id=recipient_id
        )
    # Each person's events are numbered 1..n without a gap or a repeat.
    for audience, recipient_id in PEOPLE:
        seqs = list(
            InboxEvent.objects.filter(audience=audience, recipient_id=recipient_id)
            .order_by("seq")
            .values_list("seq", flat=True)
        )
        assert seqs == list(range(1, len(seqs) + 1))
        assert InboxCounter.objects.get(audience=audience, recipient_id=recipient_id).seq == len(seqs)


@pytest.mark.django_db
def test_the_recount_command_repairs_a_wrong_counter():
    for i in range(3):
        inbox_message_put(**row("patient", "p-1", f"k{i}"))
    InboxCounter.objects.filter(recipient_id="p-1").update(unread_consultation=17, unseen=0)
    out = StringIO()

    call_command("inbox_recount", stdout=out)

    assert "corrected 1" in out.getvalue()
    assert inbox_counts(audience="patient", recipient_id="p-1")["total"] == 3
    assert inbox_counts(audience="patient", recipient_id="p-1")["unseen"] == 3
    assert InboxEvent.objects.filter(kind="counts.changed").count() == 1
    out = StringIO()
    call_command("inbox_recount", "--audience", "patient", "--id", "p-1", stdout=out)
    assert "corrected 0" in out.getvalue()


@pytest.mark.django_db
def test_the_count_is_one_query_on_one_row(django_assert_num_queries, patient_app):
    for i in range(30):
        inbox_message_put(**row("patient", "p-42", f"k{i}", Category.values[i % 5]))

    with django_assert_num_queries(1):
        counts = inbox_counts(audience="patient", recipient_id="p-42")

    assert counts == {
        "total": 30,
        "by_category": dict.fromkeys(Category.values, 6),
        "unseen": 30,
    }


@pytest.mark.django_db
def test_seen_read_and_archived_through_the_api(patient_app):
    messages = [
        inbox_message_put(**row("patient", "p-42", f"k{i}", "consultation" if i < 3 else "order"))[0] for i in range(5)
    ]
    ids = [m.pk for m in messages]

    seen = patient_app.post("/api/v1/inbox/mark", {"action": "seen", "ids": ids[:2]}, format="json")
    read = patient_app.post("/api/v1/inbox/mark", {"action": "read", "ids": [ids[2]]}, format="json")
    archived = patient_app.post("/api/v1/inbox/mark", {"action": "archive", "category": "order"}, format="json")

    assert [seen.json(), read.json(), archived.json()] == [{"marked": 2}, {"marked": 1}, {"marked": 2}]
    counts = patient_app.get("/api/v1/inbox/unread-count").json()
    assert counts["total"] == 2
    assert counts["by_category"]["order"] == 0
    assert counts["unseen"] == 0  # 2 seen, 1 read (so seen), 2 archived (out of the counts)

    def listed(query=""):
        return sorted(m["id"] for m in patient_app.get(f"/api/v1/inbox/messages{query}").json()["results"])

    assert listed() == ids[:3]
    assert listed("?archived=true") == ids[3:]
    assert listed("?unread=true") == ids[:2]
    assert listed("?seen=false&archived=true") == ids[3:]
    message = patient_app.get("/api/v1/inbox/messages").json()["results"][0]
    assert message["id"] == ids[2]
    assert message["seen_at"] is not None
    assert message["read_at"] is not None
    assert (message["unread"], message["unseen"]) == (False, False)


@pytest.mark.django_db
def test_bulk_mark_rejects_bad_input_with_the_fields(patient_app):
    response = patient_app.post("/api/v1/inbox/mark", {"action": "burn", "ids": ["x"]}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert set(response.json()["fields"]) == {"action", "ids.0"}


@pytest.mark.django_db
def test_someone_elses_ids_are_not_marked(patient_app):
    (mine,) = [inbox_message_put(**row("patient", "p-42", "mine"))[0]]
    (theirs,) = [inbox_message_put(**row("patient", "p-43", "theirs"))[0]]

    response = patient_app.post("/api/v1/inbox/mark", {"action": "read", "ids": [mine.pk, theirs.pk]}, format="json")

    assert response.json() == {"marked": 1}
    assert InboxMessage.objects.get(pk=theirs.pk).read_at is None
    assert inbox_counts(audience="patient", recipient_id="p-43")["total"] == 1


@pytest.mark.django_db
def test_a_purge_moves_the_counts(patient_app):
    old, _new = (inbox_message_put(**row("patient", "p-42", k))[0] for k in ("old", "new"))
    InboxMessage.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))

    assert inbox_messages_purge(older_than_days=365) == 1

    assert inbox_counts(audience="patient", recipient_id="p-42")["total"] == 1
    assert InboxEvent.objects.filter(kind="counts.changed").count() == 1


@pytest.mark.django_db
def test_someone_elses_message_button_is_404(catalog, doctor_app):
    message, _ = inbox_message_put(
        **row("patient", "p-42", "k"), actions=[{"key": "view", "label": "查看", "style": "default", "link": {}}]
    )

    response = doctor_app.post(f"/api/v1/inbox/messages/{message.pk}/actions/view")

    assert response.status_code == 404
    assert not InboxActionPress.objects.exists()


def _person_with_messages(recipient_id: str, n: int = 250) -> list[int]:
    """n messages in every category, some already seen, read or archived, the same for whoever."""
    categories = Category.values
    inbox_messages_put_many(
        [row("patient", recipient_id, f"{recipient_id}-{i}", categories[i % len(categories)]) for i in range(n)]
    )
    ids = list(InboxMessage.objects.filter(recipient_id=recipient_id).order_by("id").values_list("id", flat=True))
    for action, every in (("seen", 3), ("read", 5), ("archive", 7), ("delete", 11)):
        inbox_messages_mark(audience="patient", recipient_id=recipient_id, action=action, ids=ids[::every])
    return ids


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["all", "category", "some ids", "over 200 ids"])
@pytest.mark.parametrize("action", ["seen", "read", "archive", "delete"])
def test_a_mark_in_one_statement_does_what_the_orm_path_does(monkeypatch, action, how):
    """PostgreSQL marks in one statement (`_mark_in_sql`), SQLite reads then updates through the
    ORM: the same counts, the same live event, the same rows afterwards, for each action and each
    way of choosing (the event lists ids up to 200, past that names the last one)."""
    from inbox import services

    outcome = {}
    for way in ("sql", "orm"):
        ids = _person_with_messages(f"p-{way}")
        position = {pk: i for i, pk in enumerate(ids)}
        if way == "orm":
            monkeypatch.setattr(services, "_mark_in_sql", services._mark_through_orm)
        marked = inbox_messages_mark(
            audience="patient",
            recipient_id=f"p-{way}",
            action=action,
            ids={"some ids": ids[2:9], "over 200 ids": ids}.get(how),
            category="order" if how == "category" else None,
        )
        monkeypatch.undo()
        event = InboxEvent.objects.filter(recipient_id=f"p-{way}").order_by("-seq").first()
        data = dict(event.data)
        data["ids"] = None if data["ids"] is None else [position[pk] for pk in data["ids"]]
        if "up_to_id" in data:
            data["up_to_id"] = position[data["up_to_id"]]
        states = [
            tuple(v is not None for v in values)
            for values in InboxMessage.objects.filter(recipient_id=f"p-{way}")
            .order_by("id")
            .values_list("seen_at", "read_at", "archived_at", "deleted_at")
        ]
        outcome[way] = (marked, event.kind, data, inbox_counts(audience="patient", recipient_id=f"p-{way}"), states)

    assert outcome["sql"] == outcome["orm"]
    assert outcome["sql"][0] > 0
    assert outcome["sql"][3] == inbox_counts_truth(audience="patient", recipient_id="p-sql")
