import random
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection

from channels.fakeproviders import push_receipts, serve
from channels.models import ChannelAccount


class Command(BaseCommand):
    help = "Run the fake provider server (WeChat, WeCom, JPush, Aliyun and Tencent SMS) that sandbox accounts send to."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)
        parser.add_argument("--latency-ms", type=int, default=0, help="Added to every provider answer.")
        parser.add_argument("--latency-max-ms", type=int, default=0, help="A uniform draw up to this, if higher.")
        parser.add_argument("--late-share", type=float, default=0.0, help="This share of answers comes --late-ms late.")
        parser.add_argument("--late-ms", type=int, default=0)
        parser.add_argument(
            "--receipts-to",
            default="",
            help="The center's address (http://127.0.0.1:8000): push SMS status reports to its callbacks every 2 s.",
        )

    def handle(self, *args, host, port, latency_ms, latency_max_ms, late_share, late_ms, receipts_to, **options):
        server = serve(host, port, latency_ms)
        state = server.state
        state.latency_max_ms, state.late_share, state.late_ms = latency_max_ms, late_share, late_ms
        self.stdout.write(f"fake providers on http://{host}:{server.server_address[1]} (GET /_calls shows what came)")
        try:
            while True:
                if receipts_to:
                    self.push(state, receipts_to)
                time.sleep(2 if receipts_to else 3600)
        except KeyboardInterrupt:
            server.shutdown()

    def push(self, state, center: str) -> None:
        """As the providers do: batched, a few duplicated, a few late, now and then an unknown id."""
        targets = {
            "duplicate_share": 0.05,
            "late_share": 0.2,
            "fail_share": 0.03,
            "unknown": int(random.random() < 0.1),  # noqa: S311 (a simulation)
        }
        try:
            self.add_targets(targets, center)
        except DatabaseError as err:
            # The database restarted, or cut this connection: skip this push (the reports wait for
            # the next one) and connect afresh, rather than end the fake server (`make run` stops
            # everything when one of its processes exits).
            connection.close()
            self.stderr.write(f"receipts push skipped, the database is away: {err}")
            return
        try:
            push_receipts(state, targets)
        except OSError as err:  # the center not up yet: the reports wait for the next push
            self.stderr.write(f"receipts push failed: {err}")

    def add_targets(self, targets: dict, center: str) -> None:
        """The sandbox accounts' callback addresses at the center, from the database."""
        for account in ChannelAccount.objects.filter(sandbox=True, enabled=True, provider="wechat"):
            token = (account.credentials or {}).get("token")
            kind = "wechat_template" if account.channel == "wechat_oa_template" else "wechat_subscribe"
            if token:
                targets.setdefault(kind, {"url": f"{center}/api/v1/callbacks/wechat/{account.pk}", "token": token})
        for account in ChannelAccount.objects.filter(channel="sms", sandbox=True, enabled=True):
            token = (account.credentials or {}).get("callback_token")
            if token and account.provider in ("aliyun", "tencent"):
                targets.setdefault(
                    account.provider, f"{center}/api/v1/callbacks/{account.provider}/{account.pk}?token={token}"
                )
