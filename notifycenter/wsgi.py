import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")
django.setup(set_prefix=False)  # as get_wsgi_application does, before the import below

from notifycenter.handlers import wsgi_application  # noqa: E402

application = wsgi_application()
