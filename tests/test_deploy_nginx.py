"""deploy/nginx.conf.example, the proxy README's production section asks for: WebSocket upgrades
passed, the event stream not buffered, read timeouts above the live heartbeat, the scheme for
DJANGO_BEHIND_PROXY, bodies up to the API's own limit (nginx's default 1 MiB would answer a
larger batch with its HTML 413), and nginx itself accepts it."""

import datetime
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "nginx.conf.example"


def text() -> str:
    return EXAMPLE.read_text()


def location(path: str) -> str:
    match = re.search(r"location = " + re.escape(path) + r" \{(.*?)\n    \}", text(), re.S)
    assert match, f"no location for {path}"
    return match.group(1)


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([sm]?)", value).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_passes_websocket_upgrades():
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default upgrade;", text())
    assert "proxy_http_version 1.1;" in text()
    assert "proxy_set_header Upgrade $http_upgrade;" in text()
    assert "proxy_set_header Connection $connection_upgrade;" in text()


def test_live_paths_outlast_the_heartbeat_and_the_stream_is_not_buffered():
    heartbeat = settings.INBOX_LIVE["HEARTBEAT_SECONDS"]
    for path in ("/api/v1/inbox/live", "/api/v1/inbox/stream"):
        block = location(path)
        timeout = re.search(r"proxy_read_timeout (\w+);", block).group(1)
        assert seconds(timeout) > heartbeat
    assert "proxy_buffering off;" in location("/api/v1/inbox/stream")


def test_tells_the_center_the_scheme_host_and_client():
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text()
    # With the port, so the admin's CSRF check matches the browser's Referer off port 443 too.
    assert "proxy_set_header Host $http_host;" in text()


def test_takes_bodies_up_to_the_api_limit():
    size = re.search(r"client_max_body_size (\d+)([km]);", text())
    assert size, "nginx's default is 1 MiB, under API_MAX_BODY_BYTES"
    limit = int(size.group(1)) * {"k": 1024, "m": 1024 * 1024}[size.group(2)]
    assert limit > settings.API_MAX_BODY_BYTES


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed")
def test_nginx_accepts_it(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notify.hospital.cn")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    site = (
        text()
        .replace("/etc/ssl/certs/notify.hospital.cn.pem", str(tmp_path / "cert.pem"))
        .replace("/etc/ssl/private/notify.hospital.cn.key", str(tmp_path / "key.pem"))
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
