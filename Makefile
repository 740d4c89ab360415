# offload: `make run` starts the server, `make test` runs every check.
# Both create .venv on first use (Python 3.11+ needed as python3).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run example-fastapi example-starlette test lint typecheck unit bench clean help

help:
	@echo "make run   - install into .venv and start offload under gunicorn (examples.tasks, SQLite)"
	@echo "make example-fastapi / make example-starlette - the same, serving examples/*_app.py beside offload"
	@echo "make test  - install test dependencies into .venv, then ruff, mypy and the whole test suite"
	@echo "make bench - run the benchmarks in bench/ (prints figures; slow)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.example-deps: pyproject.toml $(VENV)/.run-deps
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	@touch $@

$(VENV)/.test-deps: pyproject.toml $(VENV)/.run-deps
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: $(VENV)/.run-deps
	@mkdir -p var
	$(BIN)/gunicorn -c config/gunicorn.conf.py

example-fastapi example-starlette: $(VENV)/.example-deps
	@mkdir -p var
	OFFLOAD_APP=examples.$(@:example-%=%)_app:app \
	OFFLOAD_TASK_MODULES=examples.tasks,examples.$(@:example-%=%)_app \
		$(BIN)/gunicorn -c config/gunicorn.conf.py

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

unit: $(VENV)/.test-deps
	$(BIN)/pytest -q

# promtool (Debian's prometheus package) runs the alert-rule tests in tests/deploy/;
# installed when missing (as root, apt-get; the package also brings the Prometheus
# server, which a systemd host enables). REQUIRE_PROMTOOL makes that test fail
# instead of skipping if promtool is still not there.
.PHONY: promtool
promtool:
	@command -v promtool >/dev/null || { \
	  echo "make: promtool not found; installing Debian's prometheus package (apt-get) for tests/deploy"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	@echo "make: using $$(command -v promtool) ($$(promtool --version 2>&1 | head -n1))"
test: promtool
test: export REQUIRE_PROMTOOL = 1
# The store tests start their own PostgreSQL server (tests/support/postgres.py);
# Debian's postgresql package is installed when its binaries are missing (as root,
# apt-get; only then). Nothing uses a server that happens to be running.
.PHONY: postgresql
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "make: PostgreSQL not found; installing Debian's postgresql package (apt-get) for the store tests"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }
test: postgresql

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(VENV)/.test-deps
	$(BIN)/python bench/pool_bench.py
	$(BIN)/python bench/http_bench.py
	$(BIN)/python bench/add_task_bench.py
	$(BIN)/python bench/hosts_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
