import time

from django.core.management.base import BaseCommand

from channels.fakeproviders import serve


class Command(BaseCommand):
    help = "Run the fake provider server (WeChat, WeCom, JPush, Aliyun and Tencent SMS) that sandbox accounts send to."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)
        parser.add_argument("--latency-ms", type=int, default=0, help="Added to every provider answer.")

    def handle(self, *args, host, port, latency_ms, **options):
        server = serve(host, port, latency_ms)
        self.stdout.write(f"fake providers on http://{host}:{server.server_address[1]} (GET /_calls shows what came)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
