"""bench/ingest.py's peer for single events: the project's settings and middleware, with one
more route, a bare Django view that validates nothing and inserts one row (bench/bare_urls.py).
Served by the same web server configuration as the API, in the same run."""

from notifycenter.settings import *  # noqa: F403

ROOT_URLCONF = "bare_urls"
