"""A new web process loads at start what its first requests would load (notifycenter/warmup.py):
checked in a process of its own that imports the ASGI application as uvicorn does, on the test
database; and a database away at start leaves the warm-up undone without stopping the process."""

import json
import os
import subprocess
import sys

import pytest

from scenarios.models import Scenario
from tests.test_e2e_worker import ROOT, _database_url

pytestmark = pytest.mark.django_db(transaction=True)


# What the process reports after importing the ASGI application inside an event loop, as uvicorn
# with several workers does (where Django refuses database work), before any request.
PROBE = """
import asyncio, importlib, json, sys

async def load():
    importlib.import_module("notifycenter.asgi")

asyncio.run(load())
from scenarios import catalog, rendering
print(json.dumps({
    "tasks": "channels.tasks" in sys.modules and "scenarios.tasks" in sys.modules,
    "urls": "channels.receipts.views" in sys.modules,
    "scenarios": sorted(code for code in catalog._loaded if code != catalog.ACCOUNTS),
    "accounts": catalog.ACCOUNTS in catalog._loaded,
    "templates": rendering._compiled.cache_info().currsize,
}))
"""


def _probe(database_url: str, warm: str) -> tuple[dict, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings_test",
        "DATABASE_URL": database_url,
        "WEB_WARM_UP": warm,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_new_process_has_loaded_the_catalog_and_the_tasks_before_its_first_request(catalog):
    report, _ = _probe(_database_url(), "1")

    assert report["tasks"] and report["urls"] and report["accounts"]
    assert report["scenarios"] == sorted(Scenario.objects.values_list("code", flat=True))
    assert len(report["scenarios"]) >= 17
    assert report["templates"] > 0


def test_without_the_warm_up_the_process_loads_them_on_first_use(catalog):
    report, _ = _probe(_database_url(), "0")

    assert report["scenarios"] == [] and not report["accounts"] and report["templates"] == 0


def test_a_database_away_at_start_leaves_the_warm_up_undone_and_the_process_up():
    report, log = _probe("postgres://postgres@127.0.0.1:1/nowhere", "1")

    assert report["tasks"] and report["scenarios"] == []
    assert "warm-up: the catalog was not loaded" in log
