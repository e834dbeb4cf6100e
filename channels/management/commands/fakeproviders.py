import time

from django.core.management.base import BaseCommand

from channels.fakeproviders import serve


class Command(BaseCommand):
    help = "Run the fake provider server (WeChat, WeCom, JPush, Aliyun and Tencent SMS) that sandbox accounts send to."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)
        parser.add_argument("--latency-ms", type=int, default=0, help="Added to every provider answer.")
        parser.add_argument("--latency-max-ms", type=int, default=0, help="A uniform draw up to this, if higher.")
        parser.add_argument("--late-share", type=float, default=0.0, help="This share of answers comes --late-ms late.")
        parser.add_argument("--late-ms", type=int, default=0)

    def handle(self, *args, host, port, latency_ms, latency_max_ms, late_share, late_ms, **options):
        server = serve(host, port, latency_ms)
        state = server.state
        state.latency_max_ms, state.late_share, state.late_ms = latency_max_ms, late_share, late_ms
        self.stdout.write(f"fake providers on http://{host}:{server.server_address[1]} (GET /_calls shows what came)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
