"""Inbox benchmark: the station inbox next to django-notifications (community fork), same data
shape, same PostgreSQL, same run.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/inbox.py [--rows 10000000] [--samples 300] [--fanout 100000]
    .venv/bin/python bench/inbox.py --fanout-only [--fanout 100000]   # under a minute

Loads N messages over N/10 recipients into both (COPY), heavy and light users mixed: 1% of the
people hold 30% of the messages. Then, per query, p50/p99 over random people through each side's
own code (our selectors and services; the peer's manager and queryset methods): unread count,
first page, a deep page (ours by cursor, the peer by offset, as its API pages), read-all for a
heavy user, and a fan-out of one message to --fanout people (ours as a broadcast,
scenarios/fanout.py: the inbox row is the per-person record, written with COPY; the peer through
notify.send). `--fanout-only` skips the load and the queries: the people, then the fan-out alone.
Needs PostgreSQL (DATABASE_URL, default as `make test`).
"""

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

base_db = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
DB = urlunparse(urlparse(base_db)._replace(path=urlparse(base_db).path + "_inbox_bench"))
os.environ.update(
    DATABASE_URL=DB,
    DJANGO_SETTINGS_MODULE="bench.inbox_settings",
    DJANGO_SECRET_KEY="bench-only",
    INBOX_JWT_SECRET="bench-only-secret-of-sufficient-length-for-hs256",
    FIELD_ENCRYPTION_KEYS="YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
    NOTIFYCENTER_DATA_DIR=tempfile.mkdtemp(prefix="nc-inbox-bench-"),
    CELERY_TASK_ALWAYS_EAGER="1",
    LOG_LEVEL="WARNING",
)
os.environ.pop("REDIS_URL", None)  # nothing here needs Redis; eager tasks, local cache

import importlib  # noqa: E402

import psycopg  # noqa: E402
from table import print_table  # noqa: E402  (bench/table.py, beside this script)

NULL = "\\N"  # COPY's text format for NULL
counters_migration = importlib.import_module("inbox.migrations.0002_live_counters_seen_archive")
CATEGORIES = ["consultation", "prescription", "order", "points", "system"]


def reset_database():
    admin = urlunparse(urlparse(DB)._replace(path="/postgres"))
    name = urlparse(DB).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def owners(rows: int, people: int, seed: int = 7) -> list[int]:
    """Message i goes to owners[i]: 1% of people (the heavy ones) get 30% of the messages."""
    rng = random.Random(seed)
    heavy = max(1, people // 100)
    return [rng.randrange(heavy) if rng.random() < 0.3 else rng.randrange(heavy, people) for _ in range(rows)]


def copy_rows(conn, sql: str, lines, chunk: int = 200_000):
    with conn.cursor() as cur, cur.copy(sql) as copy:
        buf = io.StringIO()
        for n, line in enumerate(lines, 1):
            buf.write(line)
            if n % chunk == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def load(rows: int, people: int) -> float:
    owner = owners(rows, people)
    t0 = time.monotonic()
    with psycopg.connect(DB) as conn:
        # People for the peer (auth_user), as its recipient is a user row.
        copy_rows(
            conn,
            "COPY auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) FROM STDIN",
            (f"{i + 1}\t!\tf\tp-{i}\t\t\t\tf\tt\t2026-01-01 00:00:00+08\n" for i in range(people)),
        )
        conn.execute("SELECT setval('auth_user_id_seq', %s)", (people + 1,))
        ct = conn.execute("SELECT id FROM django_content_type WHERE app_label='auth' AND model='user'").fetchone()[0]
        start = 1_700_000_000  # epoch seconds; one message a second, ids in time order
        # Older messages are mostly read; the newest 20% mostly unread.
        unread = [i > rows * 0.8 or (i * 7919) % 10 < 1 for i in range(rows)]
        copy_rows(
            conn,
            "COPY inbox_inboxmessage (audience, recipient_id, category, title, body, link, actions, source_key, "
            "template_code, created_at, seen_at, read_at) FROM STDIN",
            (
                f"patient\tp-{owner[i]}\t{CATEGORIES[i % 5]}\t问诊消息{i}\t您有一条新的问诊消息，请及时查看。\t"
                f'{{"route": "inquiry_detail", "params": {{"inquiry_id": "{i}"}}}}\t[]\tb{i}\tpt_inquiry_0000001\t'
                f"{_ts(start + i)}\t{NULL if unread[i] else _ts(start + i + 60)}\t"
                f"{NULL if unread[i] else _ts(start + i + 60)}\n"
                for i in range(rows)
            ),
        )
        # Each person's counter, as the migration that introduced them computes it.
        conn.execute(counters_migration.BACKFILL_COUNTERS)
        copy_rows(
            conn,
            "COPY notifications_notification (level, recipient_id, unread, actor_content_type_id, actor_object_id,"
            " verb, description, timestamp, public, deleted, emailed) FROM STDIN",
            (
                f"info\t{owner[i] + 1}\t{'t' if unread[i] else 'f'}\t{ct}\t1\t问诊消息{i}\t"
                f"您有一条新的问诊消息，请及时查看。\t{_ts(start + i)}\tt\tf\tf\n"
                for i in range(rows)
            ),
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE inbox_inboxmessage")
        conn.execute("VACUUM ANALYZE inbox_inboxcounter")
        conn.execute("VACUUM ANALYZE notifications_notification")
        conn.execute("VACUUM ANALYZE auth_user")
    return time.monotonic() - t0


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch))


def timed(fn, samples) -> tuple[float, float]:
    took = []
    for arg in samples:
        t0 = time.perf_counter()
        fn(arg)
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.99))]


def timed_pair(ours, peer, samples) -> tuple[tuple[float, float], tuple[float, float]]:
    """Both sides sample by sample, alternating, so that a busy moment on this shared machine
    falls on both alike; (p50, p99) of each."""
    took = ([], [])
    for arg in samples:
        for side, fn in enumerate((ours, peer)):
            t0 = time.perf_counter()
            fn(arg)
            took[side].append((time.perf_counter() - t0) * 1000)
    out = []
    for side in took:
        side.sort()
        out.append((statistics.median(side), side[min(len(side) - 1, int(len(side) * 0.99))]))
    return out[0], out[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--fanout", type=int, default=100_000, help="0: no fan-out row")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="measure again on the database a previous run loaded (same --rows), without loading it again",
    )
    ap.add_argument("--fanout-only", action="store_true", help="skip the load and the queries; fan-out alone")
    ap.add_argument(
        "--fanout-intake",
        type=int,
        default=0,
        help="also one event to this many people through event intake (the inline path, ≤ 1,000 by the API)",
    )
    args = ap.parse_args()
    if args.fanout_only:
        args.rows = args.fanout * 10  # people = rows / 10: the peer's recipients are user rows
    people = max(10, args.rows // 10)

    import django

    try:
        import notifications  # noqa: F401
    except ImportError:
        sys.exit("the peer is missing: .venv/bin/pip install -r bench/requirements.txt")
    if not args.reuse:
        reset_database()
    django.setup()
    from django.core.management import call_command
    from notifications.models import Notification

    rows = []
    if args.reuse:
        held = Notification.objects.count()
        if held < args.rows and not args.fanout_only:
            sys.exit(f"--reuse: the bench database holds {held:,} peer rows, not {args.rows:,}: run without --reuse")
        print(f"reusing the loaded database ({held:,} peer rows)", flush=True)
    else:
        call_command("migrate", verbosity=0)
        if args.fanout_only:
            print(f"loading {people:,} people (the peer's user rows), no messages …", flush=True)
            load(0, people)
        else:
            print(f"loading {args.rows:,} messages over {people:,} people into each side …", flush=True)
            loaded = load(args.rows, people)
            print(f"loaded both in {loaded:.0f} s", flush=True)
    if not args.fanout_only:
        queries(args, people, rows)
    if args.fanout:
        fan_out(args, rows)

    head = ("query", "ours p50 ms", "ours p99 ms", "peer p50 ms", "peer p99 ms", "peer/ours p99", "target")
    print_table(head, rows)
    print(
        f"\n{args.rows if not args.fanout_only else 0:,} messages over {people:,} people in each; "
        f"{args.samples} samples per query; peer: django-notifications-community; {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def queries(args, people, rows):
    from notifications.models import Notification

    from inbox.selectors import inbox_message_list, inbox_page, inbox_unread_counts
    from inbox.services import inbox_messages_mark_read

    # A reused database has had its read-all samples read already: other heavy users this time.
    rng = random.Random(time.time_ns() if args.reuse else 11)
    heavy_n = max(1, people // 100)
    mixed = [rng.randrange(people) if i % 2 else rng.randrange(heavy_n) for i in range(args.samples)]

    def pair(label, ours, peer, samples, target=""):
        (o50, o99), (p50, p99) = timed_pair(ours, peer, samples)
        rows.append((label, f"{o50:.2f}", f"{o99:.2f}", f"{p50:.2f}", f"{p99:.2f}", f"{p99 / o99:.1f}×", target))

    pair(
        "unread count (per category; peer: total)",
        lambda u: inbox_unread_counts(audience="patient", recipient_id=f"p-{u}"),
        lambda u: Notification.objects.filter(recipient_id=u + 1).unread().count(),
        mixed,
        "p99 ≤ 5 ms, ≥ 5× peer",
    )
    # The same people again, right after: what a count costs once the pages it reads are in
    # PostgreSQL's buffers, as an open app's person's are (the first pass is mostly first reads
    # of pages no sample touched before, on both sides).
    pair(
        "unread count, the same people again (warm)",
        lambda u: inbox_unread_counts(audience="patient", recipient_id=f"p-{u}"),
        lambda u: Notification.objects.filter(recipient_id=u + 1).unread().count(),
        mixed,
    )
    # The floor under both: one statement's round trip through Django's cursor, nothing read.
    # A count that is one row read cannot be much under it; the peer's index count is a few times it.
    from django.db import connection

    def round_trip(_):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    (f50, f99), _ = timed_pair(round_trip, lambda u: None, mixed)
    rows.append(("floor: SELECT 1 through Django's cursor", f"{f50:.2f}", f"{f99:.2f}", "", "", "", ""))
    pair(
        "first page (20; ours as the list API reads it)",
        lambda u: inbox_page(audience="patient", recipient_id=f"p-{u}", limit=20),
        lambda u: list(Notification.objects.filter(recipient_id=u + 1)[:20]),
        mixed,
        "p99 ≤ 15 ms, ≥ 5× peer",
    )
    heavy = [rng.randrange(heavy_n) for _ in range(args.samples)]
    cursors = {}
    for u in heavy:
        page = list(inbox_message_list(audience="patient", recipient_id=f"p-{u}").values_list("id", flat=True)[200:201])
        cursors[u] = page[0] if page else None
    pair(
        "deep page, heavy user (ours: cursor; peer: OFFSET 200)",
        lambda u: inbox_page(audience="patient", recipient_id=f"p-{u}", limit=20, before_id=cursors[u]),
        lambda u: list(Notification.objects.filter(recipient_id=u + 1)[200:220]),
        heavy,
    )
    readers = rng.sample(range(heavy_n), min(heavy_n, 2 * max(5, args.samples // 10)))
    half = len(readers) // 2
    ours_readers, peer_readers = readers[:half], readers[half:]
    o50, o99 = timed(lambda u: inbox_messages_mark_read(audience="patient", recipient_id=f"p-{u}"), ours_readers)
    p50, p99 = timed(lambda u: Notification.objects.filter(recipient_id=u + 1).mark_all_as_read(), peer_readers)
    rows.append(
        ("read-all, heavy user", f"{o50:.2f}", f"{o99:.2f}", f"{p50:.2f}", f"{p99:.2f}", f"{p99 / o99:.1f}×", "")
    )


def fan_out(args, rows):
    """One message to --fanout people: ours as a broadcast (create, then the task's run, in this
    process), the peer through notify.send to as many user rows."""
    from django.contrib.auth.models import User
    from notifications.signals import notify

    from inbox.models import InboxMessage
    from scenarios.fanout import broadcast_create, broadcast_run
    from scenarios.models import Broadcast, ChannelBinding, Rule, Scenario, Template

    # get_or_create: a --reuse run finds them from the run before.
    scenario, _ = Scenario.objects.get_or_create(
        code="membership.broadcast", defaults={"name": "会员群发", "domain": "membership"}
    )
    template, _ = Template.objects.get_or_create(
        code="pt_member_bench",
        defaults={
            "name": "群发",
            "audience": "patient",
            "category": "system",
            "title": "会员活动",
            "body": "会员日活动开始啦，欢迎参与。",
        },
    )
    ChannelBinding.objects.get_or_create(template=template, channel="inbox")
    Rule.objects.get_or_create(scenario=scenario, code="all", defaults={"audience": "patient", "template": template})
    run = Broadcast.objects.count()  # new people each run, as on a fresh database
    if args.fanout_intake:
        from scenarios.intake import event_accept

        t0 = time.perf_counter()
        event_accept(
            client="bench",
            payload={
                "event": "membership.broadcast",
                "idempotency_key": f"fan-intake-{time.time_ns()}",
                "data": {},
                "recipients": {"patient": [f"e-{run}-{i}" for i in range(args.fanout_intake)]},
            },
        )
        took = time.perf_counter() - t0
        rows.append((f"one event to {args.fanout_intake:,} through intake (s)", f"{took:.2f}", "", "", "", "", ""))
    targets = [f"f-{run}-{i}" for i in range(args.fanout)]
    t0 = time.perf_counter()
    broadcast, _ = broadcast_create(name="bench", template=template, channels=["inbox"], external_ids=targets)
    status = broadcast_run(broadcast_id=broadcast.pk)  # eager: already ran on commit; a no-op then
    ours_fan = time.perf_counter() - t0
    broadcast = Broadcast.objects.get(pk=broadcast.pk)
    written = InboxMessage.objects.filter(source_key__startswith=f"b{broadcast.pk}:").count()
    assert (status, broadcast.done, written) == ("done", args.fanout, args.fanout), (status, broadcast.done, written)
    actor = User.objects.get(pk=1)
    peer_people = User.objects.filter(pk__lte=args.fanout)
    t0 = time.perf_counter()
    notify.send(actor, recipient=peer_people, verb="会员日活动开始啦，欢迎参与。")
    peer_fan = time.perf_counter() - t0
    rows.append(
        (
            f"fan-out to {args.fanout:,}: broadcast (seconds)",
            f"{ours_fan:.1f}",
            "",
            f"{peer_fan:.1f}",
            "",
            f"{peer_fan / ours_fan:.1f}×",
            "≤ 10 s, < peer",
        )
    )


if __name__ == "__main__":
    main()
