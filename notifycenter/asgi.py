"""The ASGI application: Django itself; uvicorn serves it (scripts/run.sh, docs/operations.md)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")
application = get_asgi_application()
