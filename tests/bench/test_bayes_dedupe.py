"""bench/bayes_dedupe.py: a replayed sweep per policy on a made-up results table, and its row."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench.bayes_dedupe import RUNS, Table, replay, row
from bench.peers import head_space
from sweeper.engine import config_key


@pytest.fixture(scope="module")
def table() -> Table:
    """The head space's 24 configs with made-up results: only lr 1e-3, 10 epochs, batch 32 is best."""
    space = head_space()
    names = sorted(space)
    results: Table = {}
    for values in itertools.product(*(space[n] for n in names)):
        config = dict(zip(names, values, strict=True))
        val = 0.2 + 0.3 * (config["lr"] == 1e-3) + 0.1 * (config["epochs"] == 10)
        val += 0.1 * (config["batch_size"] == 32) + 0.01 * config["dropout"]
        results[config_key(config)] = {
            "val": val,
            "test": val - 0.05,
            "history": [{"val_accuracy": val}],
        }
    return results


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(("policy", "calls"), [("nearest (now)", RUNS), ("1 try", RUNS)])
def test_a_replayed_sweep_runs_distinct_configs_and_counts_engine_calls(
    table: Table, policy: str, calls: int
) -> None:
    result = replay(table, policy, seed=0)
    assert result["distinct"] == RUNS
    assert result["calls"] == calls
    top = max(r["val"] for r in table.values())
    # 22 of the 24 configs ran, so the best one is among them unless it was one of the two left.
    assert result["val"] == top or result["reach"] is None
    assert result["test"] == pytest.approx(result["val"] - 0.05)


def test_row_gives_means_and_the_median_run_reaching_the_best() -> None:
    results: list[dict[str, Any]] = [
        {"calls": 22, "reach": 4, "val": 0.8, "test": 0.7, "distinct": 22},
        {"calls": 40, "reach": None, "val": 0.6, "test": 0.5, "distinct": 22},
        {"calls": 31, "reach": 8, "val": 0.8, "test": 0.6, "distinct": 22},
    ]
    assert row("p", results) == "| p | 31.0 | 6.00 (2/3) | 8 | 0.733 | 0.600 | 22.0 |"
