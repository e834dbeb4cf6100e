import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")
get_wsgi_application()  # sets Django up before the import below

from notifycenter.handlers import wsgi_application  # noqa: E402

application = wsgi_application()
