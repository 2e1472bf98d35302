# The front door. `make run` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format snippet bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

snippet:
	cd snippet && npm ci --no-audit --no-fund && npm run build

bench: $(STAMP)
	$(BIN)/python bench/api_throughput.py
	$(BIN)/python bench/lease_cost.py

clean:
	rm -rf $(VENV) instance
