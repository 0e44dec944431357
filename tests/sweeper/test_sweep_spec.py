"""`parse_spec` end to end: a corpus of invalid specs (every layer), every W&B distribution
form the engine then samples, nested parameters, grid sizes, and any input gives a spec or
a SpecError."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sweeps
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper.errors import SpecError
from sweeper.run_config import flatten_config
from sweeper.spec import SweepSpec, parse_spec
from trainer.config import TrainConfig

BASE: dict[str, Any] = {
    "method": "bayes",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {
        "data_dir": {"value": "data/inaturalist_12K"},
        "lr": {"values": [0.001, 0.0001]},
    },
}


def make(params: dict[str, Any] | None = None, **top: Any) -> str:
    """YAML text of BASE with `params` merged into parameters and `top` into the top level.

    A value of None removes the key.
    """
    data = copy.deepcopy(BASE)
    for mapping, changes in ((data["parameters"], params or {}), (data, top)):
        for key, value in changes.items():
            mapping[key] = value
            if value is None:
                del mapping[key]
    return yaml.safe_dump(data, sort_keys=False)


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "spec.yaml")
    assert caught.value.source == "spec.yaml"
    return caught.value.problems


INVALID = [
    # --- the W&B schema and the top level
    pytest.param(make(method=None), ["method: missing"], id="method-missing"),
    pytest.param(make(method="bayesian"), ["method:", 'did you mean "bayes"'], id="method-unknown"),
    pytest.param(make(method="custom"), ["method: custom"], id="method-custom"),
    pytest.param(make(metric=None), ["metric: missing"], id="metric-missing"),
    pytest.param(
        make(metric={"name": "val_acc", "goal": "maximize"}),
        ["metric.name", 'did you mean "val_accuracy"'],
        id="metric-unknown",
    ),
    pytest.param(
        make(metric={"name": "test_accuracy", "goal": "maximize"}),
        ["metric.name", "after the last epoch"],
        id="metric-test-accuracy",
    ),
    pytest.param(
        make(metric={"name": "val_accuracy", "goal": "max"}), ["metric.goal"], id="goal-unknown"
    ),
    pytest.param(
        make(metric={"name": "val_accuracy"}),
        ["metric.goal", "default goal is minimize"],
        id="goal-default-accuracy",
    ),
    pytest.param(
        make(metric={"name": "val_loss", "goal": "maximize"}),
        ["metric.goal"],
        id="goal-maximize-loss",
    ),
    pytest.param(
        make(metric={"goal": "maximize"}), ["metric.name: missing"], id="metric-name-missing"
    ),
    pytest.param(
        make(metrics=[{"name": "val_loss"}, {"name": "val_accuracy"}], metric=None),
        ["metrics:"],
        id="multi-objective",
    ),
    pytest.param(
        make(paramters={"lr": {"value": 0.1}}),
        ["paramters:", 'did you mean "parameters"'],
        id="top-typo",
    ),
    pytest.param(
        make(epochs=5), ["epochs: W&B rejects unknown top-level keys"], id="setting-at-top"
    ),
    pytest.param(make(run_cap=0), ["run_cap:"], id="run-cap-zero"),
    pytest.param(make(run_cap="ten"), ["run_cap: expected an integer"], id="run-cap-text"),
    pytest.param(make(name=5), ["name: expected text"], id="name-number"),
    pytest.param(
        make(early_terminate={"type": "hyperband"}),
        ["early_terminate: hyperband needs min_iter"],
        id="hyperband-bare",
    ),
    pytest.param(
        make(early_terminate={"type": "median", "min_iter": 2}),
        ["early_terminate.type"],
        id="terminate-type",
    ),
    pytest.param(
        make(early_terminate={"type": "hyperband", "min_iter": 2, "eta": 1}),
        ["early_terminate.eta"],
        id="hyperband-eta",
    ),
    # --- the parameters tree
    pytest.param(make(parameters=None), ["parameters: missing"], id="parameters-missing"),
    pytest.param(make(parameters={}), ["parameters: is empty"], id="parameters-empty"),
    pytest.param(
        make(parameters=["lr", "epochs"]), ["parameters: expected a mapping"], id="parameters-list"
    ),
    pytest.param(make({"lr": 0.1}), ["parameters.lr: expected a mapping"], id="parameter-scalar"),
    pytest.param(
        make({"lr": None, "learning_rate": {"value": 0.1}}),
        ["parameters.learning_rate", '"lr"'],
        id="alias",
    ),
    pytest.param(
        make({"epoch": {"value": 5}}), ["parameters.epoch", 'did you mean "epochs"'], id="name-typo"
    ),
    pytest.param(
        make({"opt": {"parameters": {"momentm": {"value": 0.9}}}}),
        ["parameters.opt.parameters.momentm", 'did you mean "momentum"'],
        id="nested-unknown",
    ),
    pytest.param(
        make({"data_dir": None}),
        ["parameters.data_dir: missing", "cannot run"],
        id="data-dir-missing",
    ),
    pytest.param(
        make({"opt": {"parameters": {"lr": {"value": 0.1}}}}),
        ["parameters.opt.parameters.lr: lr is already given at parameters.lr"],
        id="leaf-twice",
    ),
    pytest.param(
        make({"opt": {"parameters": {"momentum": {"value": 0.9}}, "values": [1]}}),
        ["parameters.opt.values"],
        id="group-extra-key",
    ),
    pytest.param(
        make({"opt": {"parameters": {}}}), ["parameters.opt.parameters: is empty"], id="group-empty"
    ),
    # --- values against TrainConfig
    pytest.param(
        make({"lr": {"value": 0}}), ["parameters.lr.value", "greater than 0"], id="value-range"
    ),
    pytest.param(
        make({"dropout": {"values": [0.1, 1.5]}}),
        ["parameters.dropout.values[1]"],
        id="values-range",
    ),
    pytest.param(
        make({"epochs": {"value": "five"}}),
        ["parameters.epochs.value", "valid integer"],
        id="value-type",
    ),
    pytest.param(
        make({"batch_size": {"value": 32.0}}),
        ["parameters.batch_size.value", "write 32"],
        id="int-as-float",
    ),
    pytest.param(
        make({"batch_norm": {"value": "true"}}), ["parameters.batch_norm.value"], id="bool-as-text"
    ),
    pytest.param(
        make({"optimizer": {"value": "adamm"}}),
        ["parameters.optimizer.value", 'did you mean "adam"'],
        id="enum",
    ),
    pytest.param(
        make({"mode": {"values": ["head", "fulll"]}}),
        ["parameters.mode.values[1]", 'did you mean "full"'],
        id="enum-in-values",
    ),
    pytest.param(
        make({"weights": {"value": "resnet.h5"}}),
        ["parameters.weights.value", "checkpoint"],
        id="weights",
    ),
    pytest.param(
        make({"epochs": {"values": []}}), ["parameters.epochs.values: is empty"], id="values-empty"
    ),
    pytest.param(
        make({"lr": {"distribution": "uniform", "min": 0.1, "max": 0.01}}),
        ["parameters.lr.min: min 0.1 must be less than max 0.01"],
        id="min-over-max",
    ),
    pytest.param(
        make({"lr": {"distribution": "uniform", "min": 0.0, "max": 0.1}}),
        ["parameters.lr.min", "greater than 0"],
        id="uniform-low",
    ),
    pytest.param(
        make({"dropout": {"distribution": "uniform", "min": 0.0, "max": 1.0}}),
        ["parameters.dropout.max", "less than 1"],
        id="uniform-high",
    ),
    pytest.param(
        make({"lr": {"distribution": "log_uniform_values", "min": 0, "max": 0.1}}),
        ["parameters.lr.min"],
        id="log-uniform-zero",
    ),
    pytest.param(
        make({"epochs": {"distribution": "int_uniform", "min": 1, "max": 10.5}}),
        ["parameters.epochs.max", "integer"],
        id="int-uniform-float",
    ),
    pytest.param(
        make({"epochs": {"distribution": "q_uniform", "min": 1.5, "max": 10, "q": 1}}),
        ["parameters.epochs.min", "bounds must be integers"],
        id="q-uniform-float-bounds",
    ),
    pytest.param(
        make({"epochs": {"distribution": "q_uniform", "min": 1, "max": 10}}),
        ["parameters.epochs.q", "default q is 1.0"],
        id="q-uniform-no-q",
    ),
    pytest.param(
        make({"epochs": {"distribution": "q_uniform", "min": 1, "max": 12, "q": 4}}),
        ["parameters.epochs.min", "can propose 0"],
        id="q-uniform-rounds-to-zero",
    ),
    pytest.param(
        make({"epochs": {"distribution": "uniform", "min": 1.0, "max": 10.0}}),
        ["parameters.epochs: uniform draws real numbers"],
        id="float-distribution-int-field",
    ),
    pytest.param(
        make({"optimizer": {"distribution": "uniform", "min": 0.0, "max": 1.0}}),
        ["parameters.optimizer: uniform draws numbers"],
        id="distribution-on-text",
    ),
    pytest.param(
        make({"batch_norm": {"distribution": "int_uniform", "min": 0, "max": 1}}),
        ["parameters.batch_norm: int_uniform draws numbers", "true or false"],
        id="distribution-on-bool",
    ),
    pytest.param(
        make({"lr": {"distribution": "log_uniform_value", "min": 0.001, "max": 0.1}}),
        ["parameters.lr.distribution", 'did you mean "log_uniform_values"'],
        id="distribution-typo",
    ),
    pytest.param(
        make({"lr": {"values": [0.1, 0.01], "probs": [0.5, 0.5]}}),
        ["parameters.lr.probs: unexpected key"],
        id="leaf-extra-key",
    ),
    pytest.param(
        make({"lr": {"values": [0.1, 0.01], "probabilities": [0.5, 0.6]}}),
        ["parameters.lr.probabilities", "sum to 1"],
        id="probabilities",
    ),
    pytest.param(
        make({"lr": {"distribution": "normal", "mu": 0.001, "sigma": 0.01}}),
        ["parameters.lr.sigma", "greater than 0"],
        id="normal-unbounded",
    ),
    pytest.param(
        make({"dropout": {"distribution": "beta", "a": 2, "b": 5}}),
        ["parameters.dropout.distribution", "less than 1"],
        id="beta-reaches-one",
    ),
    pytest.param(
        make(
            {
                "lr": {
                    "distribution": "q_log_uniform_values",
                    "min": 0.00001,
                    "max": 0.001,
                    "q": 0.001,
                }
            }
        ),
        ["parameters.lr.min", "can propose 0"],
        id="q-log-uniform-rounds-to-zero",
    ),
    # --- rules between fields, per combination
    pytest.param(
        make({"mode": {"value": "scratch"}}),
        ["parameters.mode='scratch'", "weights must be 'none'"],
        id="scratch-imagenet",
    ),
    pytest.param(
        make(
            {
                "model": {"value": "cnn"},
                "weights": {"value": "none"},
                "mode": {"values": ["scratch", "head"]},
            }
        ),
        ["parameters.mode='head'", "model 'cnn' has no backbone"],
        id="cnn-head",
    ),
    pytest.param(
        make(
            {
                "mode": {"value": "partial"},
                "unfreeze_from": {"value": "layer3"},
                "freeze_fraction": {"value": 0.5},
            }
        ),
        ["parameters.unfreeze_from='layer3'", "not both"],
        id="unfreeze-and-fraction",
    ),
    pytest.param(
        make(
            {
                "mode": {"value": "partial"},
                "unfreeze_from": {"values": ["layer3", None]},
                "freeze_fraction": {"distribution": "uniform", "min": 0.5, "max": 0.9},
            }
        ),
        ["parameters.freeze_fraction=<a number>", "not both"],
        id="fraction-distribution",
    ),
    # --- what the engine itself cannot run
    pytest.param(
        make(
            {"lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.1}}, method="grid"
        ),
        ["parameters.lr: grid search"],
        id="grid-continuous",
    ),
    pytest.param(
        make({"lr": {"value": 0.001}}),
        ["method: bayes needs at least one parameter"],
        id="bayes-constant",
    ),
    # --- YAML text that a dict cannot express
    pytest.param(
        make().replace("0.001", "1e-3"),
        ["parameters.lr.values[0]", "write 1.0e-3"],
        id="yaml-1e-3-is-text",
    ),
    pytest.param(
        make().replace("0.001", ".inf"),
        ["parameters.lr.values[0]", "not a finite number"],
        id="infinity",
    ),
    pytest.param(
        make({"data_dir": {"value": "DATE"}}).replace("DATE", "2024-01-01"),
        ["parameters.data_dir.value", "date"],
        id="date-value",
    ),
    pytest.param(
        make() + "  3: {value: 1}\n", ["parameters.3", "keys must be text"], id="number-key"
    ),
    pytest.param(
        make() + "  lr: {value: 0.1}\n",
        ["parameters.lr (line", "given twice", "first at line"],
        id="duplicate-key",
    ),
    pytest.param(
        make({"opt": {"parameters": {"momentum": {"value": 0.9}}}})
        + "      momentum: {value: 0.8}\n",
        ["parameters.opt.parameters.momentum (line"],
        id="duplicate-nested-key",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), INVALID)
def test_invalid_spec_names_the_key_path(text: str, fragments: list[str]) -> None:
    problems = problems_of(text)
    assert any(all(fragment in problem for fragment in fragments) for problem in problems), problems


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 35


def test_every_problem_is_reported_at_once() -> None:
    text = make(
        {
            "lr": {"value": -1.0},
            "epochs": {"values": [0, 5]},
            "optimiser": {"value": "adam"},
            "mode": {"values": ["head", "scatch"]},
        },
        method="bayesian",
        metric={"name": "val_acc", "goal": "maximize"},
    )
    problems = problems_of(text)
    expected = [
        "method:",
        "metric.name",
        "parameters.lr.value",
        "parameters.epochs.values[0]",
        "parameters.optimiser",
        "parameters.mode.values[1]",
    ]
    assert len(problems) == len(expected), problems
    for fragment, problem in zip(expected, problems, strict=True):
        assert problem.startswith(fragment), (fragment, problem)
    with pytest.raises(SpecError, match="6 problems"):
        parse_spec(text)


def test_invalid_combinations_are_capped_in_the_message() -> None:
    models = {"model": {"value": "cnn"}, "weights": {"value": "none"}}
    problems = problems_of(
        make({**models, "mode": {"values": ["head", "partial", "gradual", "two_phase"]}})
    )
    # Each mode breaks two rules (no backbone to freeze, no pretrained weights): 8 in all.
    assert len(problems) == 6, problems
    assert all("the trainer cannot run this combination" in p for p in problems[:5])
    assert problems[5] == "parameters: 3 more cross-field problems"


# --- valid specs ---------------------------------------------------------------------


DISTRIBUTIONS = [
    pytest.param("seed", {"value": 7}, "constant", id="constant"),
    pytest.param(
        "optimizer", {"values": ["sgd", "adam", "adamw"]}, "categorical", id="categorical"
    ),
    pytest.param(
        "dropout",
        {"distribution": "categorical", "values": [0.0, 0.5]},
        "categorical",
        id="categorical-explicit",
    ),
    pytest.param(
        "batch_size",
        {"values": [16, 32], "probabilities": [0.25, 0.75]},
        "categorical_w_probabilities",
        id="categorical-probabilities",
    ),
    pytest.param("epochs", {"min": 1, "max": 4}, "int_uniform", id="int-uniform-implicit"),
    pytest.param(
        "epochs",
        {"distribution": "int_uniform", "min": 1, "max": 4},
        "int_uniform",
        id="int-uniform",
    ),
    pytest.param("momentum", {"min": 0.5, "max": 0.99}, "uniform", id="uniform-implicit"),
    pytest.param(
        "momentum", {"distribution": "uniform", "min": 0, "max": 0.9}, "uniform", id="uniform"
    ),
    pytest.param(
        "lr",
        {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 0.1},
        "log_uniform_values",
        id="log-uniform-values",
    ),
    pytest.param(
        "lr",
        {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
        "log_uniform",
        id="log-uniform",
    ),
    pytest.param(
        "lr",
        {"distribution": "inv_log_uniform_values", "min": 1.0e-4, "max": 0.1},
        "inv_log_uniform_values",
        id="inv-log-uniform-values",
    ),
    pytest.param(
        "lr",
        {"distribution": "inv_log_uniform", "min": 2.3, "max": 9.2},
        "inv_log_uniform",
        id="inv-log-uniform",
    ),
    pytest.param(
        "dropout",
        {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1},
        "q_uniform",
        id="q-uniform",
    ),
    pytest.param(
        "batch_size",
        {"distribution": "q_uniform", "min": 16, "max": 128, "q": 16},
        "q_uniform",
        id="q-uniform-int",
    ),
    pytest.param(
        "dense_units",
        {"distribution": "q_log_uniform_values", "min": 64, "max": 1024, "q": 32},
        "q_log_uniform_values",
        id="q-log-uniform-v",
    ),
    pytest.param(
        "dense_units",
        {"distribution": "q_log_uniform", "min": 4.2, "max": 6.9, "q": 8},
        "q_log_uniform",
        id="q-log-uniform",
    ),
    pytest.param(
        "momentum", {"distribution": "normal", "mu": 0.5, "sigma": 0.05}, "normal", id="normal"
    ),
    pytest.param(
        "seed",
        {"distribution": "q_normal", "mu": 1000, "sigma": 10, "q": 1},
        "q_normal",
        id="q-normal",
    ),
    pytest.param(
        "lr",
        {"distribution": "log_normal", "mu": -6.9, "sigma": 0.5},
        "log_normal",
        id="log-normal",
    ),
    pytest.param(
        "epochs",
        {"distribution": "q_log_normal", "mu": 2.3, "sigma": 0.3, "q": 1},
        "q_log_normal",
        id="q-log-normal",
    ),
    pytest.param("weight_decay", {"distribution": "beta", "a": 2, "b": 5}, "beta", id="beta"),
    pytest.param(
        "min_delta", {"distribution": "q_beta", "a": 1, "b": 9, "q": 0.05}, "q_beta", id="q-beta"
    ),
]


@pytest.mark.parametrize(("name", "parameter", "distribution"), DISTRIBUTIONS)
def test_every_wandb_distribution_validates_and_the_engine_samples_valid_configs(
    name: str, parameter: dict[str, Any], distribution: str
) -> None:
    spec = parse_spec(make({name: parameter}, method="random"))
    assert spec.parameter_space()[name].distribution == distribution
    random.seed(0)
    np.random.seed(0)
    for _ in range(20):
        proposal = sweeps.next_run(spec.raw, [], validate=False)
        assert proposal is not None
        config = TrainConfig(**flatten_config(proposal.config))
        assert getattr(config, name) == flatten_config(proposal.config)[name]


def test_deprecated_distribution_is_accepted_with_wandbs_warning() -> None:
    spec = parse_spec(make({"lr": {"distribution": "log_uniform", "min": -9.2, "max": -2.3}}))
    assert len(spec.warnings) == 1
    assert spec.warnings[0].startswith("parameters.lr: uses log_uniform")


def test_valid_spec_fields(tmp_path: Path) -> None:
    (tmp_path / "train.py").touch()
    text = make(
        {"opt": {"parameters": {"momentum": {"values": [0.8, 0.9]}}}},
        name="head",
        run_cap=10,
        early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
        program="train.py",
        command=["${env}", "python", "${program}", "${args}"],
        description="all of W&B's keys",
    )
    spec = parse_spec(text, "head.yaml", cwd=tmp_path)
    assert spec.raw == yaml.safe_load(text)
    assert (spec.source, spec.name, spec.method, spec.run_cap) == ("head.yaml", "head", "bayes", 10)
    assert spec.kind == "program"
    assert (spec.metric_name, spec.metric_goal) == ("val_accuracy", "maximize")
    assert spec.early_terminate == {"type": "hyperband", "min_iter": 2, "eta": 2}
    assert spec.warnings == []


@pytest.mark.parametrize("method", ["grid", "random"])
def test_grid_and_random_search_need_no_metric_as_on_wandb(method: str) -> None:
    spec = parse_spec(make(method=method, metric=None))
    assert (spec.metric_name, spec.metric_goal) == (None, "minimize")


@pytest.mark.parametrize(
    ("top", "needs"),
    [
        ({"method": "bayes"}, "bayes search"),
        (
            {"method": "random", "early_terminate": {"type": "hyperband", "min_iter": 2}},
            "early_terminate",
        ),
    ],
)
def test_bayes_and_hyperband_still_need_a_metric(top: dict[str, Any], needs: str) -> None:
    (problem,) = problems_of(make(metric=None, **top))
    assert problem.startswith(f"metric: missing; without one {needs} cannot compare runs")


def test_loss_metric_takes_wandbs_default_goal() -> None:
    spec = parse_spec(make(metric={"name": "val_loss"}))
    assert spec.metric_goal == "minimize"


@pytest.mark.parametrize(
    ("parameters", "size"),
    [
        ({"epochs": {"values": [5, 10]}, "dropout": {"values": [0.0, 0.2, 0.3]}}, 2 * 3 * 2),
        ({"epochs": {"min": 1, "max": 4}}, 4 * 2),
        ({"batch_size": {"distribution": "q_uniform", "min": 16, "max": 64, "q": 16}}, 3 * 2),
        ({"dropout": {"values": [0.0, 0, 0.2]}}, 2 * 2),
        ({"opt": {"parameters": {"momentum": {"values": [0.8, 0.9]}}}}, 2 * 2),
        ({"momentum": {"min": 0.5, "max": 0.9}}, None),
    ],
)
def test_grid_size(parameters: dict[str, Any], size: int | None) -> None:
    assert parse_spec(make(parameters)).grid_size() == size


def test_grid_size_matches_what_grid_search_enumerates() -> None:
    spec = parse_spec(
        make(
            {
                "epochs": {"min": 1, "max": 3},
                "opt": {"parameters": {"momentum": {"values": [0.8, 0.9]}}},
            },
            method="grid",
        )
    )
    runs: list[sweeps.SweepRun] = []
    while (proposal := sweeps.next_run(spec.raw, runs, validate=False)) is not None:
        proposal.state = sweeps.RunState.finished
        runs.append(proposal)
    assert len(runs) == spec.grid_size() == 3 * 2 * 2


def test_parameter_space_describes_nested_leaves() -> None:
    space = parse_spec(
        make(
            {
                "opt": {
                    "parameters": {"momentum": {"distribution": "uniform", "min": 0.5, "max": 0.9}}
                }
            }
        )
    )
    momentum = space.parameter_space()["momentum"]
    assert momentum.path == "parameters.opt.parameters.momentum"
    assert (momentum.distribution, momentum.count, momentum.values) == ("uniform", None, None)
    assert space.parameter_space()["lr"].values == [0.001, 0.0001]


def test_swept_parameters_are_the_schema_layers() -> None:
    spec = parse_spec(
        make(
            {
                "epochs": {"values": [5]},
                "opt": {"parameters": {"momentum": {"min": 0.5, "max": 0.9}}},
            }
        )
    )
    assert spec.swept_parameters() == ["lr", "momentum"]


_KEYS = st.sampled_from(
    ["method", "metric", "parameters", "name", "lr", "values", "value", "min", "max", "x"]
)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)


_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_any_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    try:
        assert isinstance(parse_spec(text), SweepSpec)
    except SpecError as e:
        assert e.problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _TREES, max_size=4), st.dictionaries(_KEYS, _TREES, max_size=3))
def test_any_mapping_gives_a_spec_or_a_spec_error(
    top: dict[str, Any], parameters: dict[str, Any]
) -> None:
    data = {**copy.deepcopy(BASE), **top}
    if isinstance(data.get("parameters"), dict):
        data["parameters"] = {**data["parameters"], **parameters}
    try:
        parse_spec(yaml.safe_dump(data))
    except SpecError as e:
        assert e.problems
