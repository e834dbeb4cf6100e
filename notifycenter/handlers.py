"""Django's WSGI application as the web servers run it: the API under /api/ through its own,
shorter chain of middleware (settings.API_MIDDLEWARE), everything else (the admin, the health
pages, static files, tracked links) through settings.MIDDLEWARE.

An API request is authenticated by its key or token (DRF), never by a session; it needs no
session, CSRF, admin login lock-out (django-axes), message store, history user or chosen
language, and those middleware cost 0.16-0.18 ms of CPU a request in the web process
(bench/ab.py --bare, 2026-11-30). What stays is what an API answer must have: the security
headers, the 503 on a dependency outage, the events' metrics, English, and Django's common
handling of paths.
"""

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.test.utils import override_settings

API_PREFIX = "/api/"


class ApiHandler(WSGIHandler):
    """Django's WSGI handler with settings.API_MIDDLEWARE for its chain."""

    def load_middleware(self, is_async=False):
        # Django builds a handler's chain from settings.MIDDLEWARE; this one is built once, at
        # start-up, from the API's list.
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            super().load_middleware(is_async)


def wsgi_application():
    """One WSGI application: /api/ to the API's handler, the rest to Django's own."""
    full = get_wsgi_application()
    api = ApiHandler()

    def application(environ, start_response):
        handler = api if environ.get("PATH_INFO", "").startswith(API_PREFIX) else full
        return handler(environ, start_response)

    application.api_handler, application.full_handler = api, full
    return application
