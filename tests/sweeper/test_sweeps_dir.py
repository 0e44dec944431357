"""Every sweep YAML shipped in sweeps/ validates, and the engine can run it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import sweeps
import yaml

from sweeper.run_config import flatten_config
from sweeper.spec import load_spec
from trainer.config import TrainConfig

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"
SPEC_FILES = sorted(SWEEPS_DIR.glob("*.yaml")) + sorted(SWEEPS_DIR.glob("*.yml"))


def test_the_examples_are_there() -> None:
    names = {path.name for path in SPEC_FILES}
    assert {"head_bayes.yaml", "finetune_bayes.yaml", "part_a_scratch.yaml"} <= names


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.name)
def test_spec_validates_and_the_engine_proposes_runnable_configs(path: Path) -> None:
    spec = load_spec(path)
    assert spec.warnings == []
    assert spec.raw == yaml.safe_load(path.read_text())
    random.seed(0)
    np.random.seed(0)
    runs: list[sweeps.SweepRun] = []
    # A few proposals with history, so bayes fits its model on finished runs too.
    for metric in (0.3, 0.5, 0.4):
        proposal = sweeps.next_run(spec.raw, runs, validate=False)
        assert proposal is not None
        config = TrainConfig(**flatten_config(proposal.config))
        assert config.data_dir
        proposal.state = sweeps.RunState.finished
        proposal.summary_metrics = {spec.metric_name: metric}
        proposal.history = [{spec.metric_name: metric}]
        runs.append(proposal)


def test_head_bayes_is_the_seeds_sweep() -> None:
    spec = load_spec(SWEEPS_DIR / "head_bayes.yaml")
    assert (spec.method, spec.metric_name, spec.metric_goal, spec.run_cap) == (
        "bayes",
        "val_accuracy",
        "maximize",
        22,
    )
    space = spec.parameter_space()
    fixed = {name: p.values for name, p in space.items() if p.distribution == "constant"}
    assert fixed == {
        "data_dir": ["data/inaturalist_12K"],
        "model": ["resnet50"],
        "weights": ["imagenet"],
        "mode": ["head"],
    }
    assert space["epochs"].values == [5, 10]
    assert space["dropout"].values == [0.0, 0.2, 0.3]
    assert space["batch_size"].values == [32, 64]
    assert space["lr"].values == [1e-3, 1e-4]
    assert spec.grid_size() == 24


def test_finetune_bayes_compares_strategies_with_hyperband() -> None:
    spec = load_spec(SWEEPS_DIR / "finetune_bayes.yaml")
    assert spec.early_terminate == {"type": "hyperband", "min_iter": 2, "eta": 2}
    space = spec.parameter_space()
    assert space["mode"].values == ["head", "partial", "full", "two_phase", "gradual"]
    assert space["unfreeze_from"].values == ["layer3", "layer4"]
    assert space["lr"].distribution == "log_uniform_values"
    assert (space["lr"].config["min"], space["lr"].config["max"]) == (1e-5, 1e-2)
    assert spec.grid_size() is None


def test_part_a_scratch_trains_the_cnn_from_scratch() -> None:
    spec = load_spec(SWEEPS_DIR / "part_a_scratch.yaml")
    space = spec.parameter_space()
    assert [space[name].values for name in ("model", "mode", "weights")] == [
        ["cnn"],
        ["scratch"],
        ["none"],
    ]
    assert space["activation"].values == ["relu", "gelu", "silu", "mish"]
    assert space["filter_growth"].values == [1.0, 2.0, 0.5]
    assert space["batch_norm"].values == [True, False]
    assert spec.run_cap == 30
