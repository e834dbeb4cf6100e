# The two commands: `make run` (everything, embedded) and `make test` (the whole suite on
# PostgreSQL and Redis). See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
FAKE_PROVIDERS_PORT ?= 8081
DATA_DIR ?= .data
export NOTIFYCENTER_DATA_DIR := $(abspath $(DATA_DIR))

.PHONY: run test lint format setup migrate messages schema clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip install --quiet -r requirements-dev.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $@

setup: $(VENV)/.installed
	@$(PY) scripts/local_env.py
	$(PY) manage.py migrate --noinput -v0
	@# The catalog goes into a new database only, so local edits in the admin survive a restart;
	@# `manage.py load_catalog` refreshes it on purpose (each added or changed row gets a history
	@# record, so the first edit in the console shows what it changed).
	@test -f "$(NOTIFYCENTER_DATA_DIR)/catalog-loaded" || \
	  ($(PY) manage.py load_catalog -v0 && touch "$(NOTIFYCENTER_DATA_DIR)/catalog-loaded")
	@$(PY) manage.py bootstrap_local

run: setup
	@PY=$(PY) PORT=$(PORT) FAKE_PROVIDERS_PORT=$(FAKE_PROVIDERS_PORT) \
	  FAKE_PROVIDERS_URL=http://127.0.0.1:$(FAKE_PROVIDERS_PORT) scripts/run.sh

# The tests keep their files in a data folder of their own (notifycenter/settings_test.py), never
# in the one `make run` uses: the export above would otherwise give them .data and its local.env.
test: $(VENV)/.installed
	@env -u NOTIFYCENTER_DATA_DIR PY=$(PY) scripts/test.sh $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate translation catalogs after changing strings (needs GNU gettext).
messages: $(VENV)/.installed
	$(PY) manage.py makemessages -l zh_Hans --no-wrap --no-location --ignore ".venv/*" --ignore "bench/*"
	$(PY) manage.py compilemessages --ignore ".venv/*"

# Regenerate the committed OpenAPI document after changing the API (a test compares it with what
# /api/schema/ serves, which is in English whatever the admin language).
schema: $(VENV)/.installed
	@$(PY) scripts/local_env.py
	$(PY) manage.py spectacular --lang en --file docs/openapi.yaml --validate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
