"""A request with a Host not in ALLOWED_HOSTS (a load balancer probing by address) is one WARNING
line naming the host, not an ERROR with a traceback each time."""

import logging

from django.test import Client, override_settings


@override_settings(ALLOWED_HOSTS=["notify.hospital.cn"])
def test_an_unlisted_host_is_one_warning_line(caplog):
    with caplog.at_level(logging.INFO, logger="django.security.DisallowedHost"):
        answer = Client().get("/healthz", HTTP_HOST="10.0.0.7:8000")

    assert answer.status_code == 400
    (record,) = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "10.0.0.7" in record.getMessage()
