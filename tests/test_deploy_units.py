"""The systemd units in deploy/ as an engineer installs them (README: Running in production): each
ExecStart names a program of the venv and flags it takes, the units agree on where things are,
the metrics folder they share exists whichever starts first and survives a restart of another,
and the web may hold the live connections README promises."""

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = ("notifycenter-web.service", "notifycenter-worker@.service", "notifycenter-beat.service")
CODE = "/opt/notifycenter"


def unit(name: str) -> dict[str, list[str]]:
    """Every key of the unit with its values in order (systemd keys may repeat)."""
    keys: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def environment(name: str) -> dict[str, str]:
    pairs = [word.split("=", 1) for value in unit(name).get("Environment", []) for word in shlex.split(value)]
    return dict(pairs)


def exec_start(name: str, instance: str = "1") -> list[str]:
    (line,) = unit(name)["ExecStart"]
    # systemd's specifiers: %i the instance, %% a literal percent sign.
    return shlex.split(line.replace("%i", instance).replace("%%", "%"))


@pytest.mark.parametrize("name", UNITS)
def test_units_agree_on_code_venv_user_and_environment_file(name):
    keys = unit(name)
    assert keys["User"] == ["notifycenter"] and keys["Group"] == ["notifycenter"]
    assert keys["WorkingDirectory"] == [CODE]
    assert keys["EnvironmentFile"] == ["/etc/notifycenter/env"]
    program = exec_start(name)[0]
    assert program.startswith(f"{CODE}/.venv/bin/"), program
    assert keys["Restart"] == ["always"]


@pytest.mark.parametrize("name", UNITS)
def test_exec_start_names_a_program_of_the_venv(name):
    """The program exists in a venv made from requirements.txt (this one is)."""
    program = Path(exec_start(name)[0]).name
    assert (Path(sys.executable).parent / program).exists(), program


def test_web_exec_start_is_uvicorn_serving_the_asgi_app_with_flags_it_knows():
    from uvicorn.main import main

    argv = exec_start("notifycenter-web.service")
    assert Path(argv[0]).name == "uvicorn"
    params = main.make_context("uvicorn", argv[1:]).params  # an unknown flag raises NoSuchOption
    module, _, attr = params["app"].partition(":")
    assert (module, attr) == ("notifycenter.asgi", "application")
    assert importlib.util.find_spec(module) is not None
    assert params["workers"] >= 1 and params["port"] == 8000


@pytest.mark.parametrize(
    ("name", "command"), [("notifycenter-worker@.service", "worker"), ("notifycenter-beat.service", "beat")]
)
def test_celery_exec_start_names_the_app_and_flags_it_knows(name, command):
    from celery.bin.beat import beat
    from celery.bin.worker import worker

    argv = exec_start(name)
    assert Path(argv[0]).name == "celery"
    assert argv[1:4] == ["-A", "notifycenter", command]
    assert importlib.util.find_spec("notifycenter.celery") is not None
    known = {opt for param in {"worker": worker, "beat": beat}[command].params for opt in param.opts}
    flags = [word.split("=")[0] for word in argv[4:] if word.startswith("-")]
    assert flags and set(flags) <= known, set(flags) - known
    if command == "worker":
        assert argv[argv.index("--hostname") + 1] == "worker1@%h"  # celery expands %h itself


@pytest.mark.parametrize("name", UNITS)
def test_a_unit_sharing_the_metrics_folder_creates_it_and_never_empties_it(name):
    """prometheus_client opens its files in PROMETHEUS_MULTIPROC_DIR at import: a worker whose
    folder is missing exits at start (a machine with workers only, or a worker before the web).
    Emptying it when one unit restarts drops the counts of the others still running; /run is a
    tmpfs, emptied at boot."""
    folder = environment(name).get("PROMETHEUS_MULTIPROC_DIR")
    if folder is None:
        return
    pre = unit(name).get("ExecStartPre", [])
    assert any(re.fullmatch(rf"[-+!]*/bin/mkdir -p {re.escape(folder)}", line) for line in pre), pre
    assert not any("rm " in line for line in pre), pre
    assert folder.startswith("/run/" + unit(name)["RuntimeDirectory"][0] + "/")


def test_the_web_may_hold_thousands_of_live_connections():
    """systemd's default soft limit on open files is 1,024: a web process at it fails live
    connections with "Too many open files" (README: raise the open-file limit)."""
    assert int(unit("notifycenter-web.service")["LimitNOFILE"][0]) >= 65536
    assert int(unit("notifycenter-worker@.service")["LimitNOFILE"][0]) > 1024


def test_web_listens_where_the_nginx_example_proxies():
    argv = exec_start("notifycenter-web.service")
    host, port = argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]
    assert host == "127.0.0.1"  # nginx on the machine; the only address uvicorn trusts X-Forwarded-* from
    assert f"server {host}:{port};" in (DEPLOY / "nginx.conf.example").read_text()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    """The units as systemd reads them, with /opt/notifycenter standing for this checkout."""
    venv_bin = str(Path(sys.executable).parent)
    paths = []
    for name in UNITS:
        target = tmp_path / name.replace("@.", "@1.")
        text = (DEPLOY / name).read_text().replace(f"{CODE}/.venv/bin", venv_bin)
        target.write_text(text.replace(CODE, str(DEPLOY.parent)))
        paths.append(str(target))
    done = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "notifycenter" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
