"""The report dict from hand-built sweeps: Part A/B choice, strategies, importance, edge cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from reports import Reference, ReportData, gather
from reports.analysis import analyze, config_value, importance, metric_value, swept_parameters
from reports.writers import json_safe
from sweeper.models import Run, RunState, Sweep, SweepState
from tests.reports.programs import DIVERGED

SPEC = {
    "name": "s",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"lr": {"values": [0.1, 0.01]}, "optimizer": {"values": ["adam", "sgd"]}},
}


#: A program sweep's spec as stored: the user's script, metric and parameters.
PROGRAM = {
    "name": "prog",
    "program": "train.py",
    "method": "grid",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {"lr": {"values": [0.1, 0.01]}},
}


def _program_sweep(sweep_id: str, spec: dict[str, Any]) -> Sweep:
    return Sweep(
        id=sweep_id,
        name=spec["name"],
        backend="local",
        state=SweepState.finished,
        method=spec["method"],
        metric_name=spec.get("metric", {}).get("name", ""),
        metric_goal=spec.get("metric", {}).get("goal", "maximize"),
        kind="program",
        spec=spec,
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )


def _row(metric: float | None, **config: Any) -> dict[str, Any]:
    return {"metric": metric, "config": config, "swept": config}


@pytest.mark.parametrize(
    ("config", "key", "expected"),
    [
        ({"mode": "scratch"}, "mode", "scratch"),
        ({}, "mode", "head"),
        ({}, "weights", "imagenet"),
        ({}, "not_a_field", None),
    ],
)
def test_config_value_falls_back_to_trainconfig_defaults(
    config: dict[str, Any], key: str, expected: Any
) -> None:
    assert config_value(config, key) == expected


def test_swept_parameters_walks_nested_groups_and_skips_fixed(
    new_sweep: Callable[..., Sweep],
) -> None:
    spec = {
        **SPEC,
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
            "epochs": {"value": 5},
            "mode": {"values": ["head"]},
            "group": {"parameters": {"dropout": {"values": [0.0, 0.3]}, "seed": {"value": 1}}},
            "batch_size": {"min": 16, "max": 64},
        },
    }
    assert swept_parameters([new_sweep("a", spec), new_sweep("b", SPEC)]) == [
        "lr",
        "dropout",
        "batch_size",
        "optimizer",
    ]


def test_importance_one_hot_encodes_categorical_parameters() -> None:
    rows = [
        _row(0.80, lr=0.01, optimizer="adam", augment="flip"),
        _row(0.78, lr=0.01, optimizer="adam", augment="none"),
        _row(0.40, lr=0.1, optimizer="sgd", augment="flip"),
        _row(0.42, lr=0.1, optimizer="sgd", augment="none"),
        _row(0.60, lr=0.01, optimizer="sgd", augment="flip"),
    ]
    result = importance(rows, ["lr", "optimizer", "augment"], "val_accuracy")
    by_feature = {p["feature"]: p for p in result["parameters"]}
    assert set(by_feature) == {
        "lr",
        "optimizer=adam",
        "optimizer=sgd",
        "augment=flip",
        "augment=none",
    }
    assert by_feature["optimizer=adam"]["value"] == "adam"
    assert (
        by_feature["optimizer=adam"]["correlation"] > 0 > by_feature["optimizer=sgd"]["correlation"]
    )
    assert by_feature["lr"]["correlation"] < -0.8
    assert sum(p["importance"] for p in result["parameters"]) == pytest.approx(1.0)
    importances = [p["importance"] for p in result["parameters"]]
    assert importances == sorted(importances, reverse=True)
    assert result["runs"] == 5 and result["note"] is None


@pytest.mark.parametrize(
    ("rows", "note", "features"),
    [
        ([], "at least 2 finished runs; there are 0", set()),
        ([_row(0.5, lr=0.1)], "at least 2 finished runs; there are 1", set()),
        ([_row(0.5, lr=0.1), _row(0.7, lr=0.01)], "only correlations are shown", {"lr"}),
        ([_row(0.5, lr=0.1), _row(0.5, lr=0.01), _row(0.5, lr=0.001)], "same val_accuracy", set()),
        (
            [_row(0.5, lr=0.1), _row(0.7, lr=0.1), _row(None, lr=0.01)],
            "used the same values",
            set(),
        ),
    ],
)
def test_importance_stays_sane_with_few_runs(
    rows: list[dict[str, Any]], note: str, features: set[str]
) -> None:
    result = importance(rows, ["lr"], "val_accuracy")
    assert note in result["note"]
    assert {p["feature"] for p in result["parameters"]} == features
    assert all(p["importance"] is None for p in result["parameters"])
    json.dumps(result, allow_nan=False)


def test_importance_without_swept_parameters() -> None:
    assert "search no parameter" in importance([_row(0.5), _row(0.6)], [], "val_accuracy")["note"]


def test_analyze_finds_part_a_and_part_b_in_one_sweep(mixed_data: ReportData) -> None:
    report = analyze(mixed_data)
    assert report["best"]["run_id"] == "run-b1"
    assert report["part_b"]["run_id"] == "run-b1"
    assert report["part_a"]["run_id"] == "run-a2"
    assert report["gap"]["val_accuracy"] == pytest.approx(0.79 - 0.36)
    assert report["gap"]["test_accuracy"] == pytest.approx(0.78 - 0.37)
    assert report["best"]["gain_over_part_a"]["test_accuracy"] == pytest.approx(0.41)
    assert report["best"]["class_names"] == ["amphibia", "aves", "fungi"]
    assert report["missing"] == []


def test_strategies_table(mixed_data: ReportData) -> None:
    rows = {s["mode"]: s for s in analyze(mixed_data)["strategies"]}
    assert [s["mode"] for s in analyze(mixed_data)["strategies"]] == ["head", "full", "scratch"]
    assert (rows["full"]["runs"], rows["full"]["finished"]) == (
        3,
        2,
    )  # the failed run counts as a run
    assert rows["full"]["best_val_accuracy"] == pytest.approx(0.78)
    assert rows["full"]["mean_val_accuracy"] == pytest.approx((0.78 + 0.45) / 2)
    assert rows["head"]["best_run_id"] == "run-b1"
    assert (rows["scratch"]["trainable_params_min"], rows["scratch"]["trainable_params_max"]) == (
        411_000,
        1_200_000,
    )
    assert rows["head"]["mean_wall_seconds"] == pytest.approx(37.5)


def test_stopped_and_errors(mixed_data: ReportData) -> None:
    report = analyze(mixed_data)
    assert [(s["id"], s["reason"]) for s in report["stopped"]] == [
        ("run-b3", "hyperband: below the 2-epoch bracket")
    ]
    assert [(e["id"], e["state"]) for e in report["errors"]] == [("run-b5", "failed")]


def test_baseline_sweep_without_scratch_runs_gives_its_best_run(
    new_sweep: Callable[..., Sweep], new_run: Callable[..., Run]
) -> None:
    main = new_sweep("main0001", SPEC, name="main")
    base = new_sweep("base0001", SPEC, name="older")
    runs = [
        new_run("main0001", "m1", {"lr": 0.01, "optimizer": "adam"}, [0.6, 0.8], test=0.79),
        new_run("base0001", "o1", {"lr": 0.1, "optimizer": "sgd"}, [0.5, 0.55], test=0.5),
        new_run("base0001", "o2", {"lr": 0.01, "optimizer": "sgd"}, [0.5, 0.9], test=0.88),
    ]
    report = analyze(ReportData(sweeps=[main], runs=runs, baseline_sweep=base))
    assert report["part_a"]["run_id"] == "o2"
    assert report["part_a"]["source"] == "baseline sweep older"
    assert (
        report["best"]["run_id"] == "m1"
    )  # the baseline's better run is not the best of the report's sweeps
    assert report["gap"]["test_accuracy"] == pytest.approx(0.79 - 0.88)
    assert [s["role"] for s in report["sweeps"]] == ["report", "baseline"]


def test_reference_without_part_a(
    new_sweep: Callable[..., Sweep], new_run: Callable[..., Run]
) -> None:
    data = ReportData(
        sweeps=[new_sweep("main0001", SPEC)],
        runs=[new_run("main0001", "m1", {"lr": 0.01}, [0.6, 0.8], test=0.7)],
        reference=Reference(name="Published", val_accuracy=0.79, test_accuracy=0.78),
    )
    report = analyze(data)
    assert report["part_a"] is None
    assert report["best"]["gain_over_part_a"] is None
    assert report["best"]["gain_over_reference"]["test_accuracy"] == pytest.approx(-0.08)
    assert report["reference"]["name"] == "Published"
    assert any("Part A is missing" in note for note in report["missing"])


def test_minimize_metric_picks_the_lowest(
    new_sweep: Callable[..., Sweep], new_run: Callable[..., Run]
) -> None:
    spec = {**SPEC, "metric": {"name": "val_loss", "goal": "minimize"}}
    sweep = new_sweep("loss0001", spec)
    low = new_run(
        "loss0001", "low", {"lr": 0.01}, [0.5, 0.9]
    )  # val_loss = 2 * (1 - acc) = 0.2 at best
    high = new_run("loss0001", "high", {"lr": 0.1}, [0.5, 0.6])
    runs = [r.model_copy(update={"metric": None}) for r in (low, high)]  # read from the history
    report = analyze(ReportData(sweeps=[sweep], runs=runs))
    assert report["best"]["run_id"] == "low"
    assert report["best"]["metric"] == pytest.approx(0.2)
    assert metric_value(runs[1], sweep, "val_loss", "minimize") == pytest.approx(0.8)


def test_non_finite_numbers_become_null(
    new_sweep: Callable[..., Sweep], new_run: Callable[..., Run]
) -> None:
    run = new_run("nan00001", "r1", {"lr": 0.01}, [0.5, 0.6], test=0.5)
    run.history[0]["val_loss"] = float("nan")
    run.summary["wall_seconds"] = float("inf")
    report = json_safe(analyze(ReportData(sweeps=[new_sweep("nan00001", SPEC)], runs=[run])))
    assert report["runs"][0]["history"][0]["val_loss"] is None
    assert report["runs"][0]["wall_seconds"] == pytest.approx(
        25.0
    )  # falls back to the epochs' seconds
    json.dumps(report, allow_nan=False)


def test_unscored_runs_have_no_metric(
    new_sweep: Callable[..., Sweep], new_run: Callable[..., Run]
) -> None:
    running = new_run("run00001", "r1", {"lr": 0.01}, [0.5, 0.9], state=RunState.running)
    report = analyze(ReportData(sweeps=[new_sweep("run00001", SPEC)], runs=[running]))
    assert report["best"] is None
    assert report["runs"][0]["metric"] is None
    assert report["runs"][0]["val_accuracy"] == pytest.approx(0.9)  # progress so far is still shown
    assert "has no finished run yet" in report["missing"][0]


# -- program sweeps: the user's own script ----------------------------------------------


def test_a_program_report_ranks_on_the_users_metric_and_parameters(
    program_sweep: tuple[Any, Sweep],
) -> None:
    backend, sweep = program_sweep
    report = analyze(gather(backend, [sweep.id]))
    assert report["kind"] == "program"
    assert report["metric"] == {"name": "val_loss", "goal": "minimize"}
    assert report["swept_parameters"] == ["seed", "learning_rate"]  # the nested one included
    best = report["best"]
    assert best["config"] == {"epochs": 3, "seed": 0, "learning_rate": 0.1, "clip": True}
    assert best["metric"] == 0.3333  # the lowest val_loss: lr 0.1, seed 0
    assert best["epochs"] == 3 and best["wall_seconds"] is not None
    assert best["test_accuracy"] is None and best["confusion_matrix"] == []
    assert (report["part_a"], report["part_b"], report["gap"]) == (None, None, None)
    assert report["strategies"] == [] and report["missing"] == []
    finished = [r for r in report["runs"] if r["state"] == "finished"]
    assert [r["swept"] for r in finished] == [
        {"seed": seed, "learning_rate": lr} for lr in (0.01, 0.1) for seed in (0, 1)
    ]
    assert finished[0]["history"][1] == {"epoch": 2, "val_loss": 0.9091}
    assert {p["parameter"] for p in report["importance"]["parameters"]} == {"seed", "learning_rate"}
    assert report["importance"]["metric"] == "val_loss"
    assert [(e["state"], e["reason"]) for e in report["errors"]] == [("failed", DIVERGED)] * 2


def test_a_program_parameter_named_like_a_trainer_setting_keeps_the_users_value(
    new_run: Callable[..., Run],
) -> None:
    spec = {
        **PROGRAM,
        "parameters": {"weights": {"values": ["a", "b"]}, "lr": {"values": [0.1, 0.2]}},
    }
    sweep = _program_sweep("prog0001", spec)
    runs = [new_run("prog0001", "r1", {"lr": 0.1}, [0.5]), new_run("prog0001", "r2", {}, [0.6])]
    report = analyze(ReportData(sweeps=[sweep], runs=runs))
    assert [r["swept"] for r in report["runs"]] == [
        {"weights": None, "lr": 0.1},  # not TrainConfig's "imagenet"
        {"weights": None, "lr": None},
    ]


@pytest.mark.parametrize("no_metric", ["", None])
def test_a_sweep_without_a_metric_lists_its_runs_and_ranks_none(
    no_metric: str | None, new_run: Callable[..., Run]
) -> None:
    spec = {key: item for key, item in PROGRAM.items() if key != "metric"}
    sweep = _program_sweep("grid0001", spec).model_copy(update={"metric_name": no_metric})
    runs = [
        new_run("grid0001", "r1", {"lr": 0.1}, [0.5, 0.6]),
        new_run("grid0001", "r2", {"lr": 0.01}, [], state=RunState.failed, reason="exit 1"),
    ]
    report = json_safe(analyze(ReportData(sweeps=[sweep], runs=runs)))
    assert report["best"] is None
    assert report["metric"] == {"name": None, "goal": None}
    assert [(r["id"], r["metric"]) for r in report["runs"]] == [("r1", None), ("r2", None)]
    assert "no metric" in report["importance"]["note"] and not report["importance"]["parameters"]
    assert report["missing"] == [
        "Sweep prog (grid0001) has no metric (grid search needs none): its runs are listed, "
        "none is ranked."
    ]
    assert report["errors"][0]["reason"] == "exit 1"
    assert report["sweeps"][0]["metric_name"] is None
    json.dumps(report, allow_nan=False)
