# The two commands: `make run` (everything, embedded) and `make test` (the whole suite on
# PostgreSQL and Redis). See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
FAKE_PROVIDERS_PORT ?= 8081
DATA_DIR ?= .data
export NOTIFYCENTER_DATA_DIR := $(abspath $(DATA_DIR))

.PHONY: run test lint format setup migrate messages clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

setup: $(VENV)/.installed
	@$(PY) scripts/local_env.py
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py loaddata catalog -v0
	@$(PY) manage.py bootstrap_local

run: setup
	@PY=$(PY) PORT=$(PORT) FAKE_PROVIDERS_PORT=$(FAKE_PROVIDERS_PORT) scripts/run.sh

test: $(VENV)/.installed
	@PY=$(PY) scripts/test.sh $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate translation catalogs after changing strings (needs GNU gettext).
messages: $(VENV)/.installed
	cd notifycenter && ../$(PY) ../manage.py makemessages -l zh_Hans
	for app in scenarios channels inbox; do (cd $$app && ../$(PY) ../manage.py makemessages -l zh_Hans); done
	$(PY) manage.py compilemessages

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
