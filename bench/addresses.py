"""What keeping addresses encrypted in the directory costs, in process, each step beside its peer
measured in the same run:

    .venv/bin/python bench/addresses.py [--people 2000] [--rounds 5]

- claim + fill: the engine's claim of a chunk of 20 queued SMS deliveries (`sending._claim`:
  SELECT … FOR UPDATE with the recipients joined, one UPDATE) and, inside it, the real addresses
  filled from the directory (`deliveries_fill_addresses`: one Fernet decryption per delivery, no
  query); the peer is the claim's database work alone (the same statements, no fill).
- fan-out read: reading people by id as an event's intake does (`recipients_resolve`, lazy:
  nothing decrypted), against the same read with every address decrypted (an eager field).
- directory write: people written with five addresses inline (encrypted and hashed), against
  the same people written by id only.

Needs PostgreSQL (DATABASE_URL as `make test`); creates and drops its own database `<name>_addresses`.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from ingest import db_url_for, reset_database  # bench/ingest.py, beside this script
from table import print_table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(url: str) -> None:
    reset_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings_test")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
    url = db_url_for(base, base.rsplit("/", 1)[-1] + "_addresses")
    setup(url)

    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from channels.addresses import deliveries_fill_addresses
    from channels.models import ChannelAccount, Delivery, DeliveryStatus, Recipient
    from channels.sending import _claim
    from channels.services import DeliveryRequest, deliveries_create, recipients_resolve

    n = args.people
    ChannelAccount.objects.create(name="aliyun", channel="sms", provider="aliyun", is_default=True)
    rows = []

    def person(i, tag):
        return {
            "id": f"{tag}-{i}",
            "phone": f"138{i:08d}",
            "wechat_mini_openid": f"oMini-{tag}-{i:012d}",
            "wechat_oa_openid": f"oOA-{tag}-{i:012d}",
            "wechat_unionid": f"oUnion-{tag}-{i:012d}",
            "push_registration_ids": [f"190e35f7e0{i:09d}"],
        }

    write, write_ids = [], []
    for r in range(args.rounds):
        with transaction.atomic():
            write.append(
                timed(lambda r=r: recipients_resolve(named={"patient": [person(i, f"w{r}") for i in range(n)]}))
            )
        with transaction.atomic():
            write_ids.append(timed(lambda r=r: recipients_resolve(named={"patient": [f"b{r}-{i}" for i in range(n)]})))
    rows.append(("directory write (per person)", write, "the same people by id only", write_ids))

    ids = [f"w0-{i}" for i in range(n)]
    lazy, eager = [], []
    for _ in range(args.rounds):
        lazy.append(timed(lambda: recipients_resolve(named={"patient": ids})))

        def read_all():
            opened = []
            for p in recipients_resolve(named={"patient": ids}).values():
                opened.append((p.phone, p.wechat_mini_openid, p.wechat_oa_openid, p.push_registration_ids))
            return opened

        eager.append(timed(read_all))
    rows.append(("fan-out read, lazy (per person)", lazy, "every address decrypted", eager))

    people = list(Recipient.objects.filter(external_id__in=ids))
    later = timezone.now() + timedelta(days=1)
    created = deliveries_create(
        requests=[
            DeliveryRequest(
                channel="sms", recipient=p, content={"template_id": "T"}, idempotency_key=f"k{i}", not_before=later
            )
            for i, p in enumerate(people)
        ]
    )
    Delivery.objects.filter(pk__in=[d.pk for d in created]).update(not_before=timezone.now())
    chunks = [[d.pk for d in created[i : i + 20]] for i in range(0, len(created), 20)]
    claim_fill, claim_only, fill_only = [], [], []
    for chunk in chunks:
        Delivery.objects.filter(pk__in=chunk).update(status=DeliveryStatus.QUEUED)
        claim_fill.append(timed(lambda chunk=chunk: _claim(chunk)))
        Delivery.objects.filter(pk__in=chunk).update(status=DeliveryStatus.QUEUED)
        t0 = time.perf_counter()
        with transaction.atomic():
            claimed = list(
                Delivery.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("recipient", "account")
                .filter(pk__in=chunk, status=DeliveryStatus.QUEUED)
                .order_by("pk")
            )
            Delivery.objects.filter(pk__in=chunk).update(status=DeliveryStatus.SENDING)
        claim_only.append(time.perf_counter() - t0)
        fill_only.append(timed(lambda claimed=claimed: deliveries_fill_addresses(claimed)))
    per = 20
    rows.append(
        (
            "claim + fill, chunk of 20 (per delivery)",
            [t / per for t in claim_fill],
            "claim alone",
            [t / per for t in claim_only],
        )
    )
    rows.append(
        (
            "fill alone, chunk of 20 (per delivery)",
            [t / per for t in fill_only],
            "claim alone",
            [t / per for t in claim_only],
        )
    )

    def us(samples, count=1):
        return statistics.median(samples) / count * 1e6

    table = []
    for name, ours, peer_name, peer in rows:
        count = n if "per person" in name else 1
        a, b = us(ours, count), us(peer, count)
        table.append((name, f"{a:.1f}", peer_name, f"{b:.1f}", f"{a / b:.2f}"))
    print_table(("step", "µs (median)", "peer", "peer µs", "ratio"), table)
    print(f"\n{n} people, {args.rounds} rounds, {len(chunks)} chunks; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
