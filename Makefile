# The commands a newcomer needs: `make demo` runs the product (`make demo-incident` then plays an
# incident against it), `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.requirements-installed

.PHONY: demo demo-incident test lint format venv redis chromium promtool clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

redis:
	bash scripts/ensure-redis.sh

chromium:
	bash scripts/ensure-chromium.sh

promtool:
	bash scripts/ensure-promtool.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: venv redis chromium promtool lint
	$(VENV)/bin/pytest

demo: venv redis
	$(PY) -m demo

demo-incident: venv
	$(PY) -m demo.incident

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
