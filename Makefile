# Every target a user runs; `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install pg-server test test-fast demo bench gpu-check lint clean

install: $(STAMP) pg-server

# The tests start a throwaway PostgreSQL server (tests/pg_server.py): where no initdb is
# found, install Debian's server package as root, else say what is missing.
PG_FOUND := command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
pg-server:
	@$(PG_FOUND) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else \
	    echo "PostgreSQL server programs (initdb, pg_ctl) not found: install PostgreSQL to run the PostgreSQL tests (apt-get install postgresql)."; \
	  fi; }

# Re-installs only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

test: install
	WANDB_MODE=offline $(BIN)/python -m pytest -q

test-fast: install
	WANDB_MODE=offline $(BIN)/python -m pytest -q -m "not slow"

demo: install
	bash demo/run.sh

bench: install
	$(BIN)/python bench/claims.py
	$(BIN)/python bench/feature_cache.py
	$(BIN)/python bench/agent_gap.py
	$(BIN)/python bench/demo_transfer.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/cli_latency.py

# One GPU, no network, <= 8 minutes: the GPU figures of BENCHMARKS.md in one table.
gpu-check: install
	PYTHON=$(BIN)/python bash bench/gpu_check.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf .sweeper .pytest_cache .mypy_cache .ruff_cache
