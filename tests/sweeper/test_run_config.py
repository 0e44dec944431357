"""flatten_config on what wandb's own engine proposes and on plain W&B run configs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import sweeps

from sweeper.errors import SpecError
from sweeper.run_config import flatten_config
from trainer.config import TrainConfig


@pytest.mark.parametrize("method", ["grid", "random", "bayes"])
def test_flatten_config_on_engine_proposals_with_nested_groups(method: str) -> None:
    spec: dict[str, Any] = {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {
            "data_dir": {"value": "data/inaturalist_12K"},
            "lr": {"values": [0.001, 0.0001]},
            "optimizer": {"value": "sgd"},
            "opt": {
                "parameters": {
                    "momentum": {"values": [0.8, 0.9]},
                    "schedule": {
                        "parameters": {
                            "scheduler": {"value": "step"},
                            "gamma": {"values": [0.1, 0.5]},
                        }
                    },
                }
            },
        },
    }
    proposal = sweeps.next_run(spec, [], validate=False)
    assert proposal is not None
    assert set(proposal.config["opt"]["value"]) == {"momentum", "schedule"}
    flat = flatten_config(proposal.config)
    assert set(flat) == {"data_dir", "lr", "optimizer", "momentum", "scheduler", "gamma"}
    config = TrainConfig(**flat)
    assert (config.optimizer, config.scheduler) == ("sgd", "step")
    assert config.momentum in (0.8, 0.9)


def test_flatten_config_accepts_plain_wandb_run_configs() -> None:
    config = {
        "_wandb": {"cli_version": "0.31"},
        "lr": 0.1,
        "opt": {"momentum": 0.9},
        "seed": np.int64(3),
    }
    flat = flatten_config(config)
    assert flat == {"lr": 0.1, "momentum": 0.9, "seed": 3}
    assert type(flat["seed"]) is int


def test_flatten_config_unwraps_engine_numpy_values() -> None:
    flat = flatten_config({"lr": {"value": np.float64(0.5)}, "epochs": {"value": np.int64(2)}})
    assert (type(flat["lr"]), type(flat["epochs"])) == (float, int)
    assert math.isclose(flat["lr"], 0.5)


def test_flatten_config_refuses_a_setting_given_twice() -> None:
    with pytest.raises(SpecError, match="lr: given twice"):
        flatten_config({"lr": {"value": 0.1}, "opt": {"value": {"lr": 0.2}}})
