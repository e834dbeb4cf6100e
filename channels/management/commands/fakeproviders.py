import time

from django.core.management.base import BaseCommand

from channels.fakeproviders import serve


class Command(BaseCommand):
    help = "Run the fake provider server (WeChat, WeCom robot) that sandbox channel accounts send to."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081)

    def handle(self, *args, host, port, **options):
        server = serve(host, port)
        self.stdout.write(f"fake providers on http://{host}:{server.server_address[1]} (GET /_calls shows what came)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()
