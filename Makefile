# Every target a user runs; `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench gpu-check lint clean

install: $(STAMP)

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

# One GPU, no network, <= 8 minutes: the GPU figures of BENCHMARKS.md in one table.
gpu-check: install
	PYTHON=$(BIN)/python bash bench/gpu_check.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf .sweeper .pytest_cache .mypy_cache .ruff_cache
