"""deploy/notifycenter.env.example as an engineer fills it in (README: Running in production):
it names every setting production needs and only settings the center reads, says how to make
each secret, reads the same under systemd's EnvironmentFile rules and a shell's `set -a; .`, and
with its secrets made as it says, `manage.py check --deploy` finds nothing (README: "a test runs
it")."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "notifycenter.env.example"
# Read by the process but not through settings.py's env: prometheus_client and uvicorn.
READ_ELSEWHERE = {"PROMETHEUS_MULTIPROC_DIR", "FORWARDED_ALLOW_IPS"}
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:/@=+\-\[\]]*")


def example() -> dict[str, str]:
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
        assert key not in values, f"{key} twice"
        values[key] = value
    return values


def settings_variables() -> tuple[set[str], set[str]]:
    """(every variable settings.py reads through env or secret(), those it reads without a default)."""
    tree = ast.parse((ROOT / "notifycenter" / "settings.py").read_text())
    read, required = set(), set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and (
                (
                    isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "env"
                )
                or (isinstance(node.func, ast.Name) and node.func.id == "secret")  # secrets, read as written
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            read.add(node.args[0].value)
            if not any(k.arg == "default" for k in node.keywords) and len(node.args) == 1:
                required.add(node.args[0].value)
    return read, required


def readme_required() -> set[str]:
    """Configuration rows README marks (required) or says to set in production."""
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    return {
        re.match(r"\| `([A-Z0-9_]+)`", row).group(1)
        for row in rows
        if "(required" in row or "set it in production" in row
    }


def secret_commands() -> dict[str, str]:
    """Each secret's variable → the command the example gives to make it."""
    commands, names = {}, []
    for line in EXAMPLE.read_text().splitlines():
        text = line.lstrip("#").strip()
        if re.fullmatch(r"[A-Z_, ]+(\([^)]*\))?:", text):
            names = re.findall(r"[A-Z][A-Z_]+", text.split("(")[0])
        elif text.startswith("python3 -c ") and names:
            commands.update(dict.fromkeys(names, text))
            names = []
    return commands


def filled() -> dict[str, str]:
    """The example with each CHANGE-ME made by its own command."""
    values = example()
    commands = secret_commands()
    for key, value in values.items():
        if "CHANGE-ME" in value and key in commands:
            made = subprocess.run(
                [sys.executable, "-c", commands[key].split(" -c ", 1)[1].strip("'")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            values[key] = value.replace("CHANGE-ME", made)
    values["DATABASE_URL"] = values["DATABASE_URL"].replace("CHANGE-ME", "pw")
    return values


def test_every_line_reads_the_same_under_systemd_and_a_shell():
    """No quotes, spaces, `$` or backslashes: systemd's EnvironmentFile unquotes and unescapes,
    a shell expands; django-environ reads a value starting with `$` as another variable's name."""
    for key, value in example().items():
        assert SAFE_VALUE.fullmatch(value), f"{key}={value}"


def unit_environment() -> set[str]:
    """Variables the units set themselves (Environment=)."""
    names = set()
    for unit in (ROOT / "deploy").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("Environment="):
                names.update(word.split("=", 1)[0] for word in line.removeprefix("Environment=").split())
    return names


def test_names_every_setting_production_needs():
    _, required = settings_variables()
    needed = required | readme_required() | {"DATABASE_URL", "REDIS_URL", "METRICS_TOKEN", "DJANGO_ALLOWED_HOSTS"}
    assert needed - set(example()) - unit_environment() == set()


def test_names_only_settings_the_center_reads():
    read, _ = settings_variables()
    assert set(example()) - read - READ_ELSEWHERE == set()


def test_says_how_to_make_every_secret():
    secrets_ = {key for key, value in example().items() if value == "CHANGE-ME"}
    assert secrets_ - set(secret_commands()) == set()


def test_each_secret_made_as_it_says_is_usable():
    values = filled()
    for key in secret_commands():
        assert SAFE_VALUE.fullmatch(values[key]) and not values[key].startswith("$"), key
    for key in values["FIELD_ENCRYPTION_KEYS"].split(","):
        Fernet(key.encode())
    assert len(values["DJANGO_SECRET_KEY"]) >= 50  # check --deploy's security.W009


def test_health_pages_answer_on_the_machine_itself():
    """A load balancer or scraper calling http://127.0.0.1:8000/readyz sends that Host: outside
    ALLOWED_HOSTS it gets 400 and each probe logs an error with a traceback."""
    hosts = example()["DJANGO_ALLOWED_HOSTS"].split(",")
    assert {"localhost", "127.0.0.1"} <= set(hosts)


def test_check_deploy_finds_nothing_with_the_example(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "NOTIFYCENTER_DATA_DIR": str(tmp_path), **filled()}
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
