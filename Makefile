# The front door. `make run` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := snippet/node_modules/.installed
DASH_STAMP := dni_server/dashboard/ui/node_modules/.installed

.PHONY: run test test-fast lint format snippet dashboard bench chromium audio-tools wrk clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(NODE_STAMP): snippet/package.json snippet/package-lock.json
	cd snippet && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(DASH_STAMP): dni_server/dashboard/ui/package.json dni_server/dashboard/ui/package-lock.json
	cd dni_server/dashboard/ui && npm ci --no-audit --no-fund --loglevel=error
	touch $(DASH_STAMP)

# Browser tests drive Debian's chromium (never a browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The insight tests make their call audio with Debian's espeak-ng (speech) and sox (mixing).
audio-tools:
	@command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1 || { \
	  echo "installing Debian's espeak-ng and sox for the insight tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox >/dev/null; }

run: $(STAMP)
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

test: $(STAMP) $(NODE_STAMP) $(DASH_STAMP) chromium audio-tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The quick loop while working: everything but the tests marked `slow` (faults, Redis
# Cluster, two instances, gunicorn, schemathesis and fuzzing). CI runs `make test`.
test-fast: $(STAMP) $(NODE_STAMP) $(DASH_STAMP) chromium audio-tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

snippet: $(NODE_STAMP)
	cd snippet && npm run build

dashboard: $(DASH_STAMP)
	cd dni_server/dashboard/ui && npm run build

# The load generator for the throughput benchmarks, from Debian's packages.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing Debian's wrk for the benchmarks"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

bench: $(STAMP) chromium wrk
	$(BIN)/python bench/api_throughput.py
	$(BIN)/python bench/lease_cost.py
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/report_query.py
	$(BIN)/python bench/webhook_throughput.py
	$(BIN)/python bench/load_mixed.py
	$(BIN)/python bench/snippet_swap.py
	$(BIN)/python bench/report_contention.py
	$(BIN)/python bench/accuracy.py

clean:
	rm -rf $(VENV) instance snippet/node_modules dni_server/dashboard/ui/node_modules
