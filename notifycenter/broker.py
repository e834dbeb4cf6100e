"""The brokers' transports, each a small correction of kombu's own.

The embedded broker: kombu's filesystem transport, with each message written whole. kombu's own
`_put` creates the message file and then writes into it; a worker polling every 10 ms
(settings.CELERY_BROKER_TRANSPORT_OPTIONS) can take the file in between and read it empty, which
kills the worker (JSONDecodeError, seen in bench/embedded.py). Here a message is written under a
name the reader skips and renamed into place, which is atomic on one filesystem. Registered as
`ncfs://`.

Redis: kombu's transport, with one client per channel for publishing. kombu builds a new
redis.Redis for every message it publishes, copying redis-py's 170 response callbacks each time:
0.3 ms of CPU, a third of a publish, and every single event publishes (bench/intake_cpu.py).
The client only wraps the channel's connection pool, so keeping it changes nothing else; a
channel is used by one thread at a time (Celery's producer pool). Chosen by
settings.CELERY_BROKER_TRANSPORT for a redis:// broker URL.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: written to `<name>.part`, then renamed to `<name>`."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # The reader takes files whose name after the first dot is exactly `<queue>.msg`.
        partial = final + ".part"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES["ncfs"] = "notifycenter.broker:Transport"


class RedisChannel(redis.Channel):
    _publisher = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # consuming (BRPOP, pub/sub): kombu keeps those itself
            return super()._create_client(asynchronous=True)
        if self._publisher is None:
            self._publisher = super()._create_client()
        return self._publisher

    def _disconnect_pools(self):
        # After a fork or a failed connect kombu makes new pools: the client goes with the old one.
        self._publisher = None
        super()._disconnect_pools()


class RedisTransport(redis.Transport):
    Channel = RedisChannel
