"""Settings, all from the environment (django-environ).

Embedded default (no variable set): SQLite and kombu's filesystem transport, every runtime file
under DATA_DIR.
Production: DATABASE_URL (PostgreSQL) and REDIS_URL (broker and cache). See README.md.
"""

import logging
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
DATA_DIR = Path(env.str("NOTIFYCENTER_DATA_DIR", default=str(BASE_DIR / ".data"))).resolve()
# `make run` writes generated local secrets here on first start; real deployments use the environment.
if (DATA_DIR / "local.env").exists():
    env.read_env(str(DATA_DIR / "local.env"), overwrite=False)


def secret(name: str, default: str | None = None) -> str:
    """A secret as written. django-environ reads a value starting with `$` as the name of another
    variable (its proxy syntax), and a random secret may start with one (Django's own
    get_random_secret_key() once in 50 keys)."""
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the {name} environment variable")
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = secret("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "notifycenter.apps.OpsAdminConfig",  # django.contrib.admin with the operations home page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "import_export",
    "simple_history",
    "axes",
    "csp",  # its checks refuse the old CSP_* settings
    "corsheaders",
    "notifycenter.apps.NotifyCenterConfig",
    "scenarios",
    "channels",
    "inbox",
]

MIDDLEWARE = [
    "notifycenter.middleware.DrfCyclesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Static files from the app server (uvicorn or gunicorn), in `make run` as in production.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "notifycenter.middleware.DependencyDownMiddleware",
    "notifycenter.metrics.EventsCountMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "notifycenter.middleware.ChosenLanguageMiddleware",
    "notifycenter.middleware.ApiInEnglishMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: it answers a locked-out admin login.
    "axes.middleware.AxesMiddleware",
]

# The console's Content-Security-Policy (django-csp): scripts and everything else only from the
# console's own static files, never a page's inline script or event handler, so a value that
# slipped into a page unescaped (a template body, a provider's answer) cannot run as the operator.
# Inline styles stay allowed (the admin's widgets set them). The one hash: django-import-export's
# export page's `onchange="onSelectToggleChange(event)"`, which it has no other way to bind. The
# API under /api/ answers JSON through its own middleware (below), without this one; Swagger UI
# at /api/docs/ (an inline script of its own) is served there too. Excluded here as well for
# the servers that run one chain for every path (Django's runserver, the tests' live server).
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'unsafe-hashes'", "'sha256-wid4zL8fR53ZYy1ljOepzR77Dn6vWUUxuNnnWWBP3I8='"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# An H5 page on another origin (the apps' own host name, e.g. https://m.hospital.cn) calling the
# station inbox from the browser: its REST paths (django-cors-headers) and the event stream
# (inbox/live.py reads the same list). Only the person's own inbox paths, whose token rides in a
# header: the backend's Api-Key paths are never called from a browser. Empty: same origin only.
CORS_ALLOWED_ORIGINS = env.list("INBOX_CORS_ALLOWED_ORIGINS", default=[])
# The person's own paths only (inbox/urls.py ENDPOINTS): the hospital backend's reading on a
# person's behalf, /api/v1/inbox/<audience>/<external_id>/…, takes an Api-Key and stays closed.
CORS_URLS_REGEX = r"^/api/v1/inbox/(messages|unread-count|read-all|mark)(/|$)"
CORS_ALLOW_HEADERS = (
    *("accept", "authorization", "content-type", "user-agent"),
    *("if-none-match", "last-event-id", "x-client-platform"),
)
CORS_EXPOSE_HEADERS = ["ETag", "Retry-After"]
CORS_PREFLIGHT_MAX_AGE = 86400

# Under /api/ (notifycenter/handlers.py): requests authenticated by key or token, never by a
# session, go through these only.
API_MIDDLEWARE = [
    "notifycenter.middleware.DrfCyclesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything that answers (503 for an outage included), so a browser sees the answer.
    "corsheaders.middleware.CorsMiddleware",
    "notifycenter.middleware.DependencyDownMiddleware",
    "notifycenter.metrics.EventsCountMiddleware",
    "notifycenter.middleware.ApiInEnglishMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Admin logins: after AXES_FAILURE_LIMIT failed tries for one user name from one address, that
# pair is locked out for AXES_COOLOFF_MINUTES (django-axes, counted in the database).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"  # in the console's language (axes has no Chinese)
AXES_ENABLE_ADMIN = False  # lockouts are lifted with `manage.py axes_reset_username` (docs/runbook.md)
# Behind a proxy (nginx), the client address is the last hop it appends to X-Forwarded-For.
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env.bool("DJANGO_BEHIND_PROXY", default=False) else ["REMOTE_ADDR"]
)

# HTTPS in production, all from the environment (README: Running in production). Behind a
# proxy that terminates TLS, DJANGO_BEHIND_PROXY=1 trusts its X-Forwarded-Proto.
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
# The health pages answer the load balancer over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

ROOT_URLCONF = "notifycenter.urls"
WSGI_APPLICATION = "notifycenter.wsgi.application"
ASGI_APPLICATION = "notifycenter.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer, and IMMEDIATE
    # transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
elif env.int("DATABASE_POOL_MAX_SIZE", default=0):
    # A pool per process caps its connections: the web server's threads (WEB_THREADS, and with
    # WEB_THREADS=0 a thread per request, whose persistent connections would pile up) share it.
    # scripts/run.sh sets this for the web server only; workers keep theirs below unless it is set
    # for them too (deploy/notifycenter-worker@.service: a hard cap, docs/runbook.md).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Django gives the pool its check (an empty query before a connection is handed out) only
    # with CONN_HEALTH_CHECKS: without it a connection PostgreSQL cut (a restart, a failover, an
    # idle timeout) went to the next request, which answered 503 (tests/test_runbook_outages.py).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_POOL_CHECK", default=True)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE"),
        "timeout": 10,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL: parameters sent apart from the statement (bench/README.md: 1.1-1.3× the events/s).
# Off behind a pooler in transaction mode that cannot keep prepared statements (PgBouncer before
# 1.21). DATABASE_PREPARE_THRESHOLD=N prepares a statement once a connection has run it N times
# (Django turns psycopg's preparing off unless told). Off by default: the measurements disagree
# (bench/README.md, the ninth session): bench/ab.py's short runs on fresh servers found it better,
# bench/ingest.py's long run on one server over a growing database 15-20% worse.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" and env.bool(
    "DATABASE_SERVER_SIDE_BINDING", default=True
):
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
    _prepare = env.str("DATABASE_PREPARE_THRESHOLD", default="off")
    if _prepare != "off":
        if not _prepare.isdigit():
            raise ImproperlyConfigured(f"DATABASE_PREPARE_THRESHOLD: a count of runs or `off`, not {_prepare!r}")
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(_prepare)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Fail-soft: with Redis away a read is a miss and a write is dropped (notifycenter/cache.py);
    # short socket timeouts so an unreachable Redis costs a request milliseconds, not seconds.
    CACHES = {
        "default": {
            "BACKEND": "notifycenter.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Console passwords (等保: length and no guessable ones): at least 10 characters, not like the user
# name or e-mail, not a common password, not all digits.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("PASSWORD_MIN_LENGTH", default=10)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A console session ends after SESSION_IDLE_MINUTES without a request (each request renews it),
# and when the browser closes.
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_MINUTES", default=30) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Operations staff read Chinese: zh-hans by default, English available; times in Asia/Shanghai.
LANGUAGE_CODE = env.str("DJANGO_LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

FIXTURE_DIRS = [BASE_DIR / "fixtures"]

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names, so browsers may cache admin CSS/JS for ever; `collectstatic` builds them.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "notifycenter.auth.ApiKeyAuthentication",
        "notifycenter.auth.InboxTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["notifycenter.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["notifycenter.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "notifycenter.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["notifycenter.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "notifycenter API",
    "DESCRIPTION": (
        "Notification center of an internet hospital: events in, deliveries out, station inbox.\n\n"
        "Limits: a body of at most 2 MiB (API_MAX_BODY_BYTES; over it 413 `payload_too_large`); at most 1,000 "
        "recipients per event (larger audiences: a broadcast) and 5,000 per batch; 500 events per batch; "
        "external ids of 1 to 64 characters; an event's `data` at most 32 KiB as JSON, nested at most 16 levels; "
        "rendered fields at most 200 characters (title), 4,000 (body) and 1,000 (each channel parameter); "
        "date-times real ones within years 2 to 9998, anchor times at most 10 years ahead; a plan's start_date "
        "within 10 years of today; ids taken from `data` at most 64 characters. Strings may not hold NUL "
        "bytes or lone surrogates. Errors: one shape, `Error`.\n\n"
        "Live inbox (no REST operations, so not listed below): a WebSocket at `/api/v1/inbox/live` and "
        "Server-Sent Events at `GET /api/v1/inbox/stream`, with the same inbox JWT in `Authorization: Bearer`, "
        "`?platform=` and `?last_event_id=`. A browser's WebSocket cannot set the header: it sends the token "
        'in its first frame, `{"type": "auth", "token": …}`; a browser\'s EventSource cannot send it at all. '
        "Frames, event types, close codes and resuming: README, Live inbox."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from our own static files (drf-spectacular-sidecar): a hospital
    # intranet has no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "notifycenter.schema.error_responses",
    ],
}

# End-user tokens for the station inbox, issued by the hospital backend.
INBOX_JWT = {
    "ALGORITHM": env.str("INBOX_JWT_ALGORITHM", default="HS256"),
    "SECRET": secret("INBOX_JWT_SECRET", default=""),
    "PUBLIC_KEY": env.str("INBOX_JWT_PUBLIC_KEY", default=""),
    "AUDIENCE": env.str("INBOX_JWT_AUDIENCE", default="notifycenter"),
    "LEEWAY_SECONDS": env.int("INBOX_JWT_LEEWAY_SECONDS", default=30),
    # A token that would stay valid longer than this (its exp from now, or from its iat) is
    # refused: a leaked token must not open an inbox for years. 0: no limit.
    "MAX_LIFETIME_HOURS": env.float("INBOX_JWT_MAX_LIFETIME_HOURS", default=720),
}

# Channel credentials and the recipient directory's addresses are encrypted at rest with these
# Fernet keys (first one encrypts, all decrypt).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# Keys the HMAC-SHA256 hashes a person is found by (phone, openids); empty: derived from
# SECRET_KEY. Changing it (or SECRET_KEY while it is empty) needs `manage.py directory_rehash`.
FIELD_HASH_KEY = secret("FIELD_HASH_KEY", default="")

# Status webhooks to loopback, link-local (cloud metadata) or unspecified addresses are refused
# when registered and when sent; on (the default with DJANGO_DEBUG, as `make run`): allowed, for a
# development machine's receiver on 127.0.0.1.
WEBHOOK_ALLOW_INTERNAL_URLS = env.bool("WEBHOOK_ALLOW_INTERNAL_URLS", default=DEBUG)

# Provider calls: (connect, read) timeouts in seconds. A claim's lease is derived from them
# (channels/sending.py); an answer later than the read timeout is an unknown outcome, reconciled.
PROVIDER_TIMEOUT = (
    env.float("PROVIDER_CONNECT_TIMEOUT", default=3.0),
    env.float("PROVIDER_READ_TIMEOUT", default=10.0),
)
# Provider calls of a chunk all in flight together on the worker's event loop (channels/flight.py);
# off: one after the other in the task's thread (the threaded pool's way, channels/sending.py).
PROVIDER_EVENT_LOOP = env.bool("PROVIDER_EVENT_LOOP", default=True)
# At most this many provider connections per worker process (per provider host pool, httpx).
PROVIDER_MAX_IN_FLIGHT = env.int("PROVIDER_MAX_IN_FLIGHT", default=500)
# Provider deliveries per task: on the event loop they go together, so a chunk is what one
# process keeps in flight; one after the other, 20 (bench/deliver.py: more did not pay).
PROVIDER_CHUNK = env.int("PROVIDER_CHUNK", default=200 if PROVIDER_EVENT_LOOP else 20)
# Identical content in one provider request where the provider allows it (Tencent SMS, up to 200
# numbers), on the event loop; off: one request per delivery (bench/deliver.py --identical).
PROVIDER_BATCHING = env.bool("PROVIDER_BATCHING", default=True)
# Unknown outcomes are looked at this long after the attempt started, so that a request still in
# flight at the provider has landed before we ask (or resend).
RECONCILE_AFTER_SECONDS = env.int("NOTIFYCENTER_RECONCILE_AFTER_SECONDS", default=30)
# Provider failover (channels/routing.py): provider-side failures in a row that open an account's
# circuit (its traffic goes to its secondary), and how long before one probe is let through.
CIRCUIT_FAILURES = env.int("NOTIFYCENTER_CIRCUIT_FAILURES", default=5)
CIRCUIT_COOLDOWN_SECONDS = env.int("NOTIFYCENTER_CIRCUIT_COOLDOWN_SECONDS", default=60)

# Base URLs of the providers; tests and the sandbox point them at `manage.py fakeproviders`.
FAKE_PROVIDERS_URL = env.str("FAKE_PROVIDERS_URL", default="http://127.0.0.1:8081")
# The center's public address: when set, message links go through /r/<token> and clicks are
# counted (channels/clicks.py).
CLICK_BASE_URL = env.str("CLICK_BASE_URL", default="")

# Celery: Redis in production and tests, kombu's filesystem transport for the embedded default.
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="notifycenter")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Celery's Django fixup closes every database connection around every task unless told to reuse
# them; reusing (and checking them with close_old_connections, see celery.py) saves a PostgreSQL
# connect per task, which was a sixth of a worker's time.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker keeps trying its broker for as long as it is away (the default gives up after 100
# tries and exits); supervision (deploy/*.service, Restart=always) is the second net.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Publishing from the web while the broker is away: one quick try, not three with waits, since the
# outbox scan sends what was not enqueued (channels.services.enqueue logs and moves on).
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
if REDIS_URL:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    # One connection try per publish, one second at most: with Redis away an event's request
    # would otherwise wait the retries out (2 s each, measured by bench/outages.py); what is not
    # enqueued waits in the outbox for the scan. A worker's own reconnects are not affected
    # (CELERY_BROKER_CONNECTION_MAX_RETRIES below).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "max_retries": 0, "socket_connect_timeout": 1}
    if CELERY_BROKER_URL.startswith("redis://"):
        # kombu's Redis transport, one publishing client per channel (notifycenter/broker.py).
        CELERY_BROKER_TRANSPORT = "notifycenter.broker:RedisTransport"
else:
    _queue_dir = DATA_DIR / "queue"
    # kombu's filesystem transport, writing each message whole (notifycenter/broker.py).
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="ncfs://")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        # Exchange bindings (kombu's default is ./control, in whatever folder the worker started).
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
        # kombu polls the folder once a second by default: a second of latency per hop. A listdir
        # every 10 ms costs little and brings an event to the inbox in tens of milliseconds.
        "polling_interval": env.float("NOTIFYCENTER_BROKER_POLL_SECONDS", default=0.01),
    }
# Beat holds a fixed set of periodic tasks, never a row per reminder (docs/architecture.md, "Time").
# NOTIFYCENTER_BEAT_SCANS=0 leaves the scans out (bench/reminders.py's peer run).
CELERY_BEAT_SCHEDULE = {
    "fire-due-messages": {"task": "scenarios.tasks.fire_due_messages", "schedule": timedelta(seconds=1)},
    "requeue-due-deliveries": {"task": "channels.tasks.requeue_due_deliveries", "schedule": timedelta(seconds=2)},
    "expand-lost-messages": {"task": "scenarios.tasks.expand_lost_messages", "schedule": timedelta(seconds=5)},
    "release-deferred-deliveries": {
        "task": "channels.tasks.release_deferred_deliveries",
        "schedule": timedelta(seconds=10),
    },
    "advance-fallback-chains": {"task": "scenarios.tasks.advance_fallback_chains", "schedule": timedelta(seconds=2)},
    "materialize-plans": {"task": "scenarios.tasks.materialize_plans", "schedule": timedelta(minutes=10)},
    "purge-old-inbox-messages": {"task": "inbox.tasks.purge_old_messages", "schedule": timedelta(hours=1)},
    "purge-old-inbox-events": {"task": "inbox.tasks.purge_old_events", "schedule": timedelta(hours=1)},
    "purge-otp-codes": {"task": "channels.tasks.purge_otp_codes", "schedule": timedelta(hours=6)},
    "purge-token-refreshes": {"task": "channels.tasks.purge_token_refreshes", "schedule": timedelta(hours=24)},
    "publish-webhooks": {"task": "notifycenter.tasks.publish_webhooks", "schedule": timedelta(seconds=2)},
    "retry-early-receipts": {"task": "channels.tasks.retry_early_receipts", "schedule": timedelta(seconds=30)},
    "pull-receipts": {"task": "channels.tasks.pull_receipts", "schedule": timedelta(seconds=60)},
    "mark-inbox-reads": {"task": "channels.tasks.mark_inbox_reads", "schedule": timedelta(seconds=5)},
    "purge-old-events": {"task": "scenarios.tasks.purge_old_events", "schedule": timedelta(hours=1)},
    # What outlived the events' deliveries: the providers' receipts and the webhook deliveries.
    "purge-old-receipts": {"task": "channels.tasks.purge_old_receipts", "schedule": timedelta(hours=1)},
    "purge-old-webhook-deliveries": {
        "task": "notifycenter.tasks.purge_old_webhook_deliveries",
        "schedule": timedelta(hours=1),
    },
    "resume-broadcasts": {"task": "scenarios.tasks.resume_broadcasts", "schedule": timedelta(seconds=30)},
}
if not env.bool("NOTIFYCENTER_BEAT_SCANS", default=True):
    CELERY_BEAT_SCHEDULE = {}
# One-time SMS codes: life, length, wrong tries before the code locks, and per-phone limits as
# (window in seconds, most codes in it).
OTP_TTL_SECONDS = env.int("OTP_TTL_SECONDS", default=300)
OTP_LENGTH = env.int("OTP_LENGTH", default=6)
OTP_MAX_TRIES = env.int("OTP_MAX_TRIES", default=5)
OTP_LIMITS = [
    (60, env.int("OTP_PER_MINUTE", default=1)),
    (3600, env.int("OTP_PER_HOUR", default=5)),
    (86400, env.int("OTP_PER_DAY", default=10)),
]
# Station inbox messages older than this are deleted by the hourly purge.
INBOX_RETENTION_DAYS = env.int("INBOX_RETENTION_DAYS", default=365)
# Access-token refresh records (admin: channel accounts' token refreshes) older than this are deleted daily.
TOKEN_REFRESH_RETENTION_DAYS = env.int("TOKEN_REFRESH_RETENTION_DAYS", default=90)
# Threads per web process serving Django (notifycenter.asgi): a fixed pool, each thread keeping its
# database connection; 0 hands Django's own ASGI handler every request (a new thread each).
WEB_THREADS = env.int("WEB_THREADS", default=8)
# A web process loads at start what its first requests would load on first use (notifycenter/warmup.py).
WEB_WARM_UP = env.bool("WEB_WARM_UP", default=True)
# Single events that a web process's threads hold at the same moment are written by one
# transaction, each answered as if alone (scenarios/groupcommit.py); off: one transaction each.
EVENT_GROUP_COMMIT = env.bool("EVENT_GROUP_COMMIT", default=True)
# A batch's deliveries are made by a worker right after the batch's commit (scenarios/expansion.py),
# not in the request: the answer is the same, the batch costs half; off: made in the request.
EVENT_BATCH_DEFERRED_DELIVERIES = env.bool("EVENT_BATCH_DEFERRED_DELIVERIES", default=True)
# Live inbox (inbox/live.py, served by notifycenter.asgi). Events are kept this long for clients
# resuming with a last event id; older ones are told to reload (`resync`).
INBOX_LIVE_EVENT_RETENTION_HOURS = env.int("INBOX_LIVE_EVENT_RETENTION_HOURS", default=72)
INBOX_LIVE = {
    "HEARTBEAT_SECONDS": env.float("INBOX_LIVE_HEARTBEAT_SECONDS", default=25),
    # A WebSocket client that sends nothing (not even {"type": "ping"}) for this long is closed.
    "IDLE_SECONDS": env.float("INBOX_LIVE_IDLE_SECONDS", default=300),
    "AUTH_SECONDS": env.float("INBOX_LIVE_AUTH_SECONDS", default=10),
    "MAX_CONNECTIONS_PER_PERSON": env.int("INBOX_LIVE_MAX_CONNECTIONS_PER_PERSON", default=5),
    # Each process re-reads this window of the event table every POLL_SECONDS, catching events
    # whose Redis publish was lost; without Redis (the embedded default) the poll is the path.
    "POLL_SECONDS": env.float("INBOX_LIVE_POLL_SECONDS", default=2),
    "POLL_SECONDS_WITHOUT_REDIS": env.float("INBOX_LIVE_POLL_SECONDS_WITHOUT_REDIS", default=0.3),
    "POLL_WINDOW_SECONDS": env.float("INBOX_LIVE_POLL_WINDOW_SECONDS", default=10),
}
# Redis pub/sub channels are shared by every database of a Redis server: the database number
# in the prefix keeps deployments (and test runs) that share one server apart.
INBOX_LIVE_CHANNEL_PREFIX = env.str(
    "INBOX_LIVE_CHANNEL_PREFIX", default=f"nc:{urlparse(REDIS_URL).path.strip('/') or '0'}:live:"
)
# Events, their messages, deliveries and attempts older than this are deleted by the daily
# purge (scenarios.retention); 0 keeps them for ever.
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=180)

# /metrics (Prometheus) answers a scraper holding this bearer token; empty: /metrics is off.
METRICS_TOKEN = secret("METRICS_TOKEN", default="")
# LOG_FORMAT=json: one JSON object a line, with the event and delivery ids where there are some.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")

# Request bodies above this many bytes answer 413 `payload_too_large` (README: limits).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

NOTIFYCENTER = {
    # Deliveries queued this long without a worker picking them up are enqueued again.
    "REQUEUE_AFTER_SECONDS": env.int("NOTIFYCENTER_REQUEUE_AFTER_SECONDS", default=30),
    "SCAN_BATCH_SIZE": env.int("NOTIFYCENTER_SCAN_BATCH_SIZE", default=500),
}

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
# uvicorn's access lines only when uvicorn writes them: `--no-access-log` (deploy/, scripts/run.sh)
# took the logger's handlers away before Django configured logging, and giving it ours again
# wrote every request line anyway, query strings and all (an admin search by openid, a
# receipt callback's `?token=`). Without the flag uvicorn has given it a handler by now.
UVICORN_ACCESS_LOG = logging.getLogger("uvicorn.access").hasHandlers()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "ids": {"()": "notifycenter.logs.ContextIds"},
        "host_refused": {"()": "notifycenter.logs.HostRefused"},
        "query_values": {"()": "notifycenter.logs.QueryValues"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "notifycenter.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["ids"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console handler (its default logging, active with DEBUG: `make run`) wrote
        # each request warning a second time, bare; the root's handler is the one.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "django.security.DisallowedHost": {"filters": ["host_refused"]},
        "axes": {"level": "WARNING"},
        # Beat ticks every second: one line per tick would bury what matters.
        "celery.beat": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "kombu.connection": {"level": "ERROR"},
        # httpx (INFO) and urllib3 (DEBUG) log every request's full URL: WeChat's access_token and Aliyun's signed
        # parameters ride in query strings. Provider results are kept on DeliveryAttempt instead.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # uvicorn's own lines (start, stop, each live connection opened) through the same handler,
        # so LOG_FORMAT=json gives one JSON object a line for them too; it set its own plain
        # handlers before Django configured logging, and this replaces them in each process.
        **{name: {"handlers": ["console"], "propagate": False} for name in UVICORN_LOGGERS},
        "uvicorn.access": {
            "handlers": ["console"] if UVICORN_ACCESS_LOG else [],
            "filters": ["query_values"],  # callback tokens and searched addresses ride in query strings
            "propagate": False,
        },
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# django-import-export: exporting needs the model's view permission, importing its change permission.
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "change"
