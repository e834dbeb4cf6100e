"""The Celery application. Tasks live in each app's tasks.py and stay thin: they call a service."""

import functools
import logging
import os

import celery.worker.consumer
from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from . import broker  # noqa: F401  (registers the embedded broker, ncfs://)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")

app = Celery("notifycenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class Consumer(celery.worker.consumer.Consumer):
    """The worker's consumer, reconnecting to a lost broker every second.

    Celery passes no interval to kombu's `ensure_connection`, whose defaults wait 2 s, then 4, 6, …
    up to 30 s between tries: a worker could sleep half a minute after Redis was back (seen in
    bench/outages.py: 12 s after a 60 s outage). A try costs one refused TCP connect."""

    RECONNECT_EVERY = 1.0

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=self.RECONNECT_EVERY,
            interval_step=0,
            interval_max=self.RECONNECT_EVERY,
        )
        return super().ensure_connected(conn)


app.conf.worker_consumer = "notifycenter.celery:Consumer"


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs):
    """Drop connections past CONN_MAX_AGE or broken, as Django does around each request."""
    from django.db import close_old_connections

    close_old_connections()


# The ids each task is about, for the JSON log lines (notifycenter/logs.py).
_IDS_FROM_ARGS = {
    "channels.tasks.deliver_many": "delivery_ids",
    "scenarios.tasks.fire_message": "message_id",
    "scenarios.tasks.send_broadcast": "broadcast_id",
}


@task_prerun.connect
def _bind_log_ids(task=None, args=None, **kwargs):
    from .logs import bind_ids, clear_ids

    clear_ids()
    name = getattr(task, "name", "")
    ids = {"task": name}
    if name in _IDS_FROM_ARGS and args:
        ids[_IDS_FROM_ARGS[name]] = args[0]
    bind_ids(**ids)


@task_postrun.connect
def _clear_log_ids(**kwargs):
    from .logs import clear_ids

    clear_ids()


@before_task_publish.connect(sender="scenarios.tasks.fire_due_messages")
def _beat_ticked(**kwargs):
    """Beat's reminder scan goes out every second: its time in Redis is /readyz's beat check."""
    import time

    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from .health import BEAT_TICK_KEY, redis_client

    try:
        redis_client().set(BEAT_TICK_KEY, time.time(), ex=3600)
    except Exception as err:  # Redis away: beat cannot publish either; /readyz shows Redis down
        logging.getLogger(__name__).debug("beat tick not recorded: %s", err)


def _survive_a_detached_transport() -> None:
    """Keep a worker alive when Redis goes away with tasks in flight (kombu 5.7.0, redis-py 8.1).

    On a lost connection Celery's consumer detaches the transport (`collect`) and then closes the
    connection. Two things still reach for the detached transport, and each raised AttributeError
    (`'NoneType' object has no attribute 'hostname'` / `'client'`), which is not a connection
    error, so the worker logged "Unrecoverable error" and exited for good (both reproduced by
    bench/outages.py under load):
    - closing the channel restores its unacknowledged messages through the transport: skipped;
      they stay in Redis' unacked set, which kombu restores after the visibility timeout, and the
      outbox scan re-enqueues their deliveries within NOTIFYCENTER_REQUEUE_AFTER_SECONDS anyway;
    - a task that finishes after the reconnect acks its message on the old channel: answered as
      the connection error it is, which kombu logs ("Couldn't ack") and survives; the message is
      restored later and the engine skips a delivery already settled.
    """
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    if getattr(kombu_redis.QoS.restore_unacked, "_notifycenter", False):
        return
    restore, connparams = kombu_redis.QoS.restore_unacked, kombu_redis.Channel._connparams

    def detached(channel) -> bool:
        return channel._pool is None and getattr(channel.connection, "client", None) is None

    def restore_unacked(self, client=None):
        if client is None and detached(self.channel):
            logging.getLogger(__name__).warning(
                "broker connection gone: %d unacknowledged message(s) left for Redis to restore",
                len(self._delivered),
            )
            self._delivered.clear()
            return []
        return restore(self, client)

    def _connparams(self, asynchronous=False):
        if getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        return connparams(self, asynchronous=asynchronous)

    restore_unacked._notifycenter = True
    kombu_redis.QoS.restore_unacked = restore_unacked
    kombu_redis.Channel._connparams = _connparams


_survive_a_detached_transport()
