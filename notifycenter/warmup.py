"""A new web process pays before it serves what its first requests would otherwise pay for.

Django and Celery import and load much on first use. Measured on the bench database
(2026-11-30): a new process's first event took 360-400 ms against 8-12 ms for the next ones, and
each new web process (a deploy, a restart) put that on a client: the URL configuration and the
view modules it imports (wechatpy, 70 ms of it), every app's Celery tasks, which intake hands
its deliveries to (aiohttp, 140 ms), the first task sent, the catalog loaded and its schemas and
templates compiled. Done at start, it also comes before `gc.freeze()` in notifycenter/asgi.py, so
those long-lived objects stay out of the collector's passes.

A database or broker that is away at start only leaves the warm-up undone (a warning; the first
requests pay, as before): a process never refuses to start for it. With a connection pool
(DATABASE_POOL_MAX_SIZE) that wait is at most the pool's timeout.
"""

import logging
import threading

from django.db import DatabaseError, connections
from django.urls import get_resolver

logger = logging.getLogger(__name__)


def process_warm_up() -> dict:
    """Load what a request would load on first use, in a thread of its own: uvicorn with several
    workers imports the application inside its event loop, where Django refuses database work,
    and the thread's connection is closed with it. Returns what was done, for the log."""
    done: dict = {}
    thread = threading.Thread(target=_warm_up, args=(done,), name="warm-up")
    thread.start()
    thread.join()
    return done


def _warm_up(done: dict) -> None:
    try:
        done["urls"] = len(get_resolver().url_patterns)
        from .celery import app

        app.loader.import_default_modules()  # every app's tasks.py
        done["tasks"] = len(app.tasks)
        app.amqp.producer_pool  # noqa: B018  (the publishing machinery; no connection is made)
        app.connection_for_write().transport  # noqa: B018  (the broker's transport module)
        from scenarios.catalog import catalog_warm

        done["scenarios"] = catalog_warm()
    except DatabaseError as err:
        logger.warning("warm-up: the catalog was not loaded (%s); the first events will load it", err)
    except Exception:  # a process never refuses to start for its warm-up
        logger.exception("warm-up: stopped early; the first requests will load the rest")
    finally:
        connections.close_all()  # this thread's connection goes back (to the pool, if one)
