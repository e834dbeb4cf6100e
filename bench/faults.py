"""Faults benchmark: 10,000 deliveries over every channel while workers are killed and the
database is cut, counted at the fake provider server.

    .venv/bin/python bench/faults.py [--deliveries 10000] [--kills 3] [--db-cut-seconds 30]

What runs, all on this machine: the fake provider server (answers in 0-200 ms, and 0.5% of
answers after 1.5 s, past the workers' 1 s read timeout: the ambiguous case), two Celery workers
(prefork ×2 sending on their event loops, as deploy/; each in its own process group) and one
beat, all reaching PostgreSQL through a TCP proxy in this process that can cut every connection.
Deliveries are released in five waves over 8 s. Faults, in order: `kill -9` of a worker's whole
process group (restarted a second later) at 3 s, 7 s and 11 s; then every database connection
cut for 30 s (new ones refused).

Printed per channel: accepted, final statuses ("sent" counts those a receipt or a read has moved
on to delivered, undelivered, read or clicked), what reached a person at the fake server (after
each provider's own de-duplication), duplicates there, deliveries not final at the end ("stuck"),
and for SMS and the inbox, deliveries recorded sent that the provider never saw. Then the
recovery time: from the end of the last fault until every delivery is final. Needs PostgreSQL
and Redis (DATABASE_URL / REDIS_URL as `make test`); makes its own database `<name>_faults` and
uses Redis database 9 unless FAULTS_REDIS_URL says otherwise.
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from ingest import db_url_for, reset_database, run, wait_http  # bench/ingest.py, beside this script
from table import print_table

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CELERY = str(Path(PY).parent / "celery")
FINAL = ("sent", "failed", "skipped", "deduplicated", "cancelled")
# Statuses after "sent" (provider receipts, reads): the provider took the message.
AFTER_SENT = ("delivered", "undelivered", "read", "clicked")

SEED = """
import os, django
django.setup()
from datetime import timedelta
from django.utils import timezone
from channels.models import ChannelAccount, Recipient, SubscribeConsent
from channels.services import DeliveryRequest, deliveries_create

def account(name, channel, provider, **kw):
    return ChannelAccount.objects.create(name=name, channel=channel, provider=provider, **kw)

accounts = {
    "wechat_oa_template": account("oa", "wechat_oa_template", "wechat", app_id="wx-oa",
        credentials={"app_secret": "s"}, is_default=True),
    "wechat_mini_subscribe": account("mini", "wechat_mini_subscribe", "wechat", app_id="wx-mini",
        credentials={"app_secret": "s"}, options={"miniprogram_state": "trial"}, is_default=True),
    "wecom_app": account("wecom", "wecom_app", "wecom", app_id="ww-corp", credentials={"corp_secret": "s"},
        options={"agentid": 1000002}, is_default=True),
    "app_push": account("jpush", "app_push", "jpush", app_id="k", credentials={"master_secret": "s"},
        is_default=True),
    "sms": account("aliyun", "sms", "aliyun", app_id="sandbox-access-key",
        credentials={"access_key_secret": "sandbox-access-secret"}, options={"sign_name": "互联网医院"},
        is_default=True),
    "sms_tencent": account("tencent", "sms", "tencent", app_id="1400000000",
        credentials={"secret_id": "sandbox-secret-id", "secret_key": "sandbox-secret-key"},
        options={"sign_name": "互联网医院"}),
}
robots = [account(f"robot-{r}", "wecom_robot", "wecom", credentials={"robot_key": f"k-{r}"},
                  rate_limit_per_minute=20) for r in range(int(os.environ["ROBOTS"]))]
people = Recipient.objects.bulk_create([
    Recipient(audience="patient", external_id=f"p-{i}", phone=f"139{i:08d}", wechat_oa_openid=f"oa-{i}",
              wechat_mini_openid=f"mini-{i}", wecom_userid=f"u{i}", push_registration_ids=[f"rid-{i}"])
    for i in range(2000)
])
SubscribeConsent.objects.bulk_create([SubscribeConsent(recipient=p, template_id="T1", remaining=50) for p in people])
later = timezone.now() + timedelta(days=1)
kinds = ["inbox", "wechat_oa_template", "wechat_mini_subscribe", "wecom_app", "app_push", "sms", "sms_tencent"]
robot_count = len(robots) * 4
requests = []
for i in range(int(os.environ["DELIVERIES"])):
    if i < robot_count:
        kind, account_row = "wecom_robot", robots[i % len(robots)]
    else:
        kind = kinds[i % len(kinds)]
        account_row = accounts.get(kind)
    content = {"title": "医生已接诊", "body": f"李明医生已接诊您的问诊 f-{i}。", "template_id": "T1",
               "params": {"thing1": f"李明{i}", "name": f"f{i}"} if kind != "sms_tencent" else {"1": f"f{i}"},
               "link": {}, "options": {}, "category": "consultation"}
    requests.append(DeliveryRequest(channel=kind.removesuffix("_tencent"), recipient=people[i % len(people)],
        idempotency_key=f"f-{i}", content=content, account=account_row, not_before=later))
deliveries_create(requests=requests)
"""

RELEASE = """
import sys, django
django.setup()
from django.utils import timezone
from channels.models import Delivery
from channels.services import enqueue
wave, waves = int(sys.argv[1]), int(sys.argv[2])
ids = [(pk, ch) for pk, ch in Delivery.objects.filter(status="queued").order_by("pk").values_list("pk", "channel")
       if pk % waves == wave]
Delivery.objects.filter(pk__in=[pk for pk, _ in ids]).update(not_before=timezone.now(), enqueued_at=timezone.now())
enqueue(ids)
"""


class CuttableProxy:
    """A TCP proxy to PostgreSQL whose `cut()` drops every connection and refuses new ones until
    `restore()`: what a network partition or a failover looks like to the workers."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.cut_now = False
        self.open: set = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer):
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.open.add(pair)

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.open.discard(pair)

    def cut(self):
        def abort_all():
            self.cut_now = True
            for a, b in list(self.open):
                a.transport.abort()
                b.transport.abort()

        self.loop.call_soon_threadsafe(abort_all)

    def restore(self):
        self.loop.call_soon_threadsafe(lambda: setattr(self, "cut_now", False))


def start_worker(env, name, log_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [
            CELERY,
            # As deploy/: prefork, one process per core, each sending its chunks on its event loop.
            *("-A", "notifycenter", "worker", "-Q", "faults", "-n", f"{name}@%h", "--pool", "prefork", "-c", "2"),
            *("--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log_dir / f"{name}.log", "a"),  # the worker's own log
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed whole
    )


def statuses(db: str) -> dict:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.channel || CASE WHEN a.provider = 'tencent' THEN '/tencent' "
            "WHEN a.provider = 'aliyun' THEN '/aliyun' ELSE '' END, d.status, d.finished_at IS NOT NULL, count(*) "
            "FROM channels_delivery d LEFT JOIN channels_channelaccount a ON a.id = d.account_id "
            "GROUP BY 1, 2, 3"
        ).fetchall()
    out: dict = {}
    for channel, status, finished, n in rows:
        key = "sent" if status in AFTER_SENT else status
        key = key if status != "unknown" else ("unknown" if finished else "reconciling")
        out.setdefault(channel, Counter())[key] += n
    return out


def not_final(db: str) -> int:
    with psycopg.connect(db) as conn:
        # Every final status has its finished time (queued, sending, deferred and an unknown being
        # reconciled have none).
        return conn.execute("SELECT count(*) FROM channels_delivery WHERE finished_at IS NULL").fetchone()[0]


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 (our own local server)
        return json.loads(r.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=10000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--db-cut-seconds", type=int, default=30)
    parser.add_argument("--robots", type=int, default=50, help="WeCom robots (20 messages a minute each), 4 each")
    parser.add_argument("--fake-port", type=int, default=18091)
    parser.add_argument("--wait-seconds", type=int, default=240, help="after the last fault, at most")
    parser.add_argument("--no-peer", action="store_true", help="skip the run without faults")
    args = parser.parse_args()
    peer = None if args.no_peer else trial(args, faults=False)
    faulted = trial(args, faults=True)
    print("\n## Runs")
    rows = [r for r in (peer, faulted) if r is not None]
    print_table(("run", "accepted", "all final after (s from first release)", "deliveries/s", "not final"), rows)
    if peer is not None:
        print(
            f"\nthe faulted run took {float(faulted[2]) - float(peer[2]):.1f} s longer than the peer "
            f"({args.db_cut_seconds} s of it with no database at all)"
        )


def trial(args, *, faults: bool) -> tuple:
    """One run on a fresh database, fake server and workers; with faults, the kills and the cut."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    db = db_url_for(base, (urlparse(base).path.lstrip("/") or "notifycenter") + "_faults")
    fake_url = f"http://127.0.0.1:{args.fake_port}"
    log_dir = Path(tempfile.mkdtemp(prefix="nc-faults-"))
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "REDIS_URL": os.environ.get("FAULTS_REDIS_URL", "redis://127.0.0.1:6379/9"),
        "CELERY_QUEUE": "faults",
        "DJANGO_SECRET_KEY": "bench-only",
        "INBOX_JWT_SECRET": "bench-only-secret-of-sufficient-length-for-hs256",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
        "NOTIFYCENTER_DATA_DIR": str(log_dir),
        "FAKE_PROVIDERS_URL": fake_url,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "DELIVERIES": str(args.deliveries),
        "ROBOTS": str(args.robots),
    }
    reset_database(db)
    run([PY, "manage.py", "migrate", "-v0"], env)
    run([PY, "-c", "import redis,os;redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"], env)
    parts = urlparse(db)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
    worker_env = {
        **env,
        "DATABASE_URL": urlunparse(parts._replace(netloc=netloc)),
        # Workers wait 1 s for an answer: the fake's late answers (1.5 s) are the ambiguous case.
        "PROVIDER_READ_TIMEOUT": "1.0",
        "NOTIFYCENTER_RECONCILE_AFTER_SECONDS": "5",
    }
    label = "with faults" if faults else "peer: no faults"
    print(
        f"\n# {label}: database {db} (workers through a cuttable proxy on :{proxy.port}), "
        f"redis {env['REDIS_URL']}, {os.cpu_count()} cores; logs in {log_dir}",
        flush=True,
    )
    fake = subprocess.Popen(
        [
            *(PY, "manage.py", "fakeproviders", "--port", str(args.fake_port), "--latency-max-ms", "200"),
            *("--late-share", "0.005", "--late-ms", "1500"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    workers: dict[str, subprocess.Popen] = {}
    beat = None
    try:
        wait_http(f"{fake_url}/_calls")
        run([PY, "-c", SEED], env)
        for name in ("w1", "w2"):
            workers[name] = start_worker(worker_env, name, log_dir)
        beat = subprocess.Popen(
            [
                *(CELERY, "-A", "notifycenter", "beat", "-S", "celery.beat:PersistentScheduler"),
                *("--schedule", str(log_dir / "beat-schedule"), "--loglevel", "WARNING"),
            ],
            cwd=ROOT,
            env=worker_env,
            stdout=open(log_dir / "beat.log", "a"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        time.sleep(8)  # workers up before the clock starts
        t0 = time.monotonic()
        waves = 5
        events = [(w * 2, "release", w) for w in range(waves)]
        if faults:
            kills = [(3 + 4 * k, "kill", f"w{k % 2 + 1}") for k in range(args.kills)]
            cut_at = (kills[-1][0] if kills else 0) + 4
            events += [*kills, (cut_at, "cut", None), (cut_at + args.db_cut_seconds, "restore", None)]
        log = []
        for at, what, arg in sorted(events, key=lambda e: e[0]):
            time.sleep(max(0, at - (time.monotonic() - t0)))
            now = time.monotonic() - t0
            if what == "release":
                subprocess.Popen([PY, "-c", RELEASE, str(arg), str(waves)], cwd=ROOT, env=env)
            elif what == "kill":
                os.killpg(workers[arg].pid, signal.SIGKILL)
                workers[arg].wait()
                log.append(f"{now:5.1f} s: kill -9 of {arg}'s process group ({not_final(db)} deliveries not final)")
                time.sleep(1)
                workers[arg] = start_worker(worker_env, arg, log_dir)
            elif what == "cut":
                proxy.cut()
                log.append(f"{now:5.1f} s: every database connection cut ({not_final(db)} deliveries not final)")
            elif what == "restore":
                proxy.restore()
                log.append(f"{now:5.1f} s: database reachable again ({not_final(db)} deliveries not final)")
        last_event = time.monotonic()
        done = None
        while time.monotonic() - last_event < args.wait_seconds:
            if not_final(db) == 0:
                done = time.monotonic()
                break
            time.sleep(0.5)
        for line in log:
            print(line)
        recovered = None if done is None else done - last_event
        if faults:
            report(db, fake_url, args, recovered)
        total = None if done is None else done - t0
        left = not_final(db)
    finally:
        for p in [*workers.values(), beat]:
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        fake.terminate()
        fake.wait()
    return (
        label,
        f"{args.deliveries:,}",
        "never" if total is None else f"{total:.1f}",
        "" if total is None else f"{args.deliveries / total:,.0f}",
        left,
    )


def report(db: str, fake_url: str, args, recovered: float | None) -> None:
    by_channel = statuses(db)
    reached = fetch_json(f"{fake_url}/_delivered")
    per_channel: dict[str, Counter] = {}
    for d in reached:
        per_channel.setdefault(d["channel"], Counter())[d["key"]] += 1
    with psycopg.connect(db) as conn:
        sent_sms = {
            k
            for (k,) in conn.execute(
                "SELECT idempotency_key FROM channels_delivery WHERE channel = 'sms' "
                "AND status IN ('sent', 'delivered', 'undelivered', 'read', 'clicked')"
            )
        }
        inbox_sent = conn.execute(
            "SELECT count(*) FROM channels_delivery WHERE channel = 'inbox' "
            "AND status IN ('sent', 'delivered', 'read', 'clicked')"
        ).fetchone()[0]
        inbox_rows = conn.execute("SELECT count(*), count(DISTINCT source_key) FROM inbox_inboxmessage").fetchone()
    sms_keys = per_channel.get("sms", Counter())
    rows = []
    totals = Counter()
    for channel in sorted(by_channel):
        counts = by_channel[channel]
        base = channel.split("/")[0]
        accepted = sum(counts.values())
        stuck = sum(n for s, n in counts.items() if s not in (*FINAL, "unknown"))
        if base == "inbox":
            at_provider, duplicates = inbox_rows[1], inbox_rows[0] - inbox_rows[1]
            untrue = max(0, inbox_sent - inbox_rows[1])
        elif base == "sms":
            at_provider = duplicates = untrue = "(below)"  # the fake's SMS keys are our OutIds, counted together
        else:
            seen = per_channel.get(base, Counter())
            at_provider, duplicates = len(seen), sum(n - 1 for n in seen.values())
            untrue = "≤ unknown" if counts["sent"] <= len(seen) <= counts["sent"] + counts["unknown"] else "NO"
        rows.append(
            (
                channel,
                accepted,
                counts["sent"],
                counts["failed"],
                counts["skipped"] + counts["deduplicated"],
                counts["unknown"],
                stuck,
                at_provider,
                duplicates,
                untrue,
            )
        )
        totals.update(accepted=accepted, stuck=stuck)
    sms_sent_count = sum(by_channel.get(c, Counter())["sent"] for c in by_channel if c.startswith("sms"))
    sms_dupes = sum(n - 1 for n in sms_keys.values())
    rows.append(
        (
            "sms (both providers)",
            sum(sum(by_channel[c].values()) for c in by_channel if c.startswith("sms")),
            sms_sent_count,
            "",
            "",
            "",
            "",
            len(sms_keys),
            sms_dupes,
            len(sent_sms - set(sms_keys)),
        )
    )
    print_table(
        (
            "channel",
            "accepted",
            "sent",
            "failed",
            "skipped/dedup",
            "unknown (final)",
            "stuck",
            "reached a person (fake)",
            "duplicates (fake)",
            "sent but not at provider",
        ),
        rows,
    )
    print()
    print(f"accepted {totals['accepted']:,}; not final at the end: {totals['stuck']}")
    print(
        "recovery: every delivery final "
        + (f"{recovered:.1f} s after the last fault ended" if recovered is not None else "NOT within the wait")
    )


if __name__ == "__main__":
    main()
