# The two commands a newcomer needs: `make demo` runs the product, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test lint format venv redis clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

redis:
	bash scripts/ensure-redis.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: venv redis lint
	$(VENV)/bin/pytest

demo: venv redis
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
