"""The trainer layer: names, values and combinations against TrainConfig, on leaves the
schema layer accepted; the combination check stays bounded."""

from __future__ import annotations

from typing import Any

import pytest

from sweeper.spec import trainer_layer
from sweeper.spec.schema import check
from sweeper.spec.trainer_layer import MAX_COMBINATIONS, metric_problems, trainer_problems
from trainer.config import TrainConfig, cross_field_problems


def spec(**parameters: Any) -> dict[str, Any]:
    return {
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"data_dir": {"value": "d"}, **parameters},
    }


def test_large_combination_products_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[TrainConfig] = []

    def counting(config: TrainConfig) -> list[str]:
        calls.append(config)
        return cross_field_problems(config)

    monkeypatch.setattr(trainer_layer, "cross_field_problems", counting)
    checkpoints = [f"ckpt/{i}.pt" for i in range(60)]
    data = spec(
        mode={"values": ["partial", "full", "head"]},
        weights={"values": checkpoints},
        freeze_fraction={"values": [0.1, 0.2, 0.3, 0.4, 0.5]},
    )
    assert trainer_problems(data, check(data)) == []
    assert 0 < len(calls) <= MAX_COMBINATIONS


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        (
            {"learning_rate": {"value": 0.1}},
            "parameters.learning_rate: 'learning_rate' is not a trainer setting (did you mean \"lr\"?)",
        ),
        ({"lr": {"value": "fast"}}, "parameters.lr.value: 'fast' is not a valid lr"),
        ({"epochs": {"distribution": "uniform", "min": 1, "max": 4}}, "epochs is an integer"),
        ({"mode": {"value": "scratch"}}, "the trainer cannot run this combination"),
    ],
)
def test_trainer_problems_name_the_leaf(parameters: dict[str, Any], fragment: str) -> None:
    data = spec(**parameters)
    problems = trainer_problems(data, check(data))
    assert any(fragment in p for p in problems), problems


def test_a_missing_required_setting_is_named() -> None:
    data = spec()
    del data["parameters"]["data_dir"]
    data["parameters"]["lr"] = {"value": 0.1}
    assert trainer_problems(data, check(data)) == [
        "parameters.data_dir: missing; TrainConfig has no default for it, so the trainer cannot "
        "run this spec: add `data_dir: {value: ...}`"
    ]


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ({"name": "val_accuracy", "goal": "maximize"}, None),
        ({"name": "val_loss"}, None),
        ({"name": "test_accuracy"}, "is measured once"),
        ({"name": "val_acc"}, 'did you mean "val_accuracy"?'),
        ({"name": "val_accuracy", "goal": "minimize"}, "use goal: maximize"),
    ],
)
def test_metric_problems(metric: dict[str, Any], fragment: str | None) -> None:
    problems = metric_problems(metric)
    assert (problems == []) if fragment is None else (fragment in problems[0]), problems
