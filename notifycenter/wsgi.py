import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifycenter.settings")
django.setup(set_prefix=False)  # as get_wsgi_application does, before the import below

from django.conf import settings  # noqa: E402

from notifycenter.handlers import wsgi_application  # noqa: E402
from notifycenter.warmup import process_warm_up  # noqa: E402

application = wsgi_application()
if settings.WEB_WARM_UP:
    process_warm_up()
