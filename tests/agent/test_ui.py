"""Tests for agent.ui: the live table and the plain log lines, fed with store-shaped runs."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any

import pytest
from rich.console import Console

from agent.slots import Slot
from agent.ui import AgentView, build_table, eta_seconds, format_value
from sweeper.models import Run, RunState, Sweep, SweepState

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPEC: dict[str, Any] = {
    "method": "grid",
    "parameters": {
        "lr": {"values": [1e-3, 1e-4]},
        "dropout": {"values": [0.0, 0.3]},
        "data_dir": {"value": "data"},
        "optim": {
            "parameters": {"optimizer": {"values": ["adam", "sgd"]}, "momentum": {"value": 0.9}}
        },
    },
}
SLOTS = [Slot(index=0, gpu=None), Slot(index=1, gpu=1, cuda_visible_devices="1")]


def _sweep() -> Sweep:
    return Sweep(
        id="sw1",
        name="head-grid",
        backend="local",
        state=SweepState.running,
        method="grid",
        metric_name="val_accuracy",
        metric_goal="maximize",
        spec=SPEC,
        created_at=NOW,
    )


def _epoch(n: int, of: int, val: float) -> dict[str, Any]:
    return {
        "epoch": n,
        "epochs": of,
        "val_accuracy": val,
        "best_val_accuracy": val,
        "seconds": 30.0,
        "images_per_second": 512.0,
    }


def _run(run_id: str, state: RunState, epochs_done: int = 0, of: int = 5, **extra: Any) -> Run:
    history = [_epoch(n, of, 0.5 + n / 100) for n in range(1, epochs_done + 1)]
    metric = max((h["val_accuracy"] for h in history), default=None)
    config = {
        "lr": 1e-4,
        "dropout": 0.3,
        "data_dir": "data",
        "optimizer": "adam",
        "momentum": 0.9,
        "epochs": of,
    }
    return Run(
        id=run_id,
        sweep_id="sw1",
        state=state,
        config=config,
        history=history,
        metric=metric,
        epochs=epochs_done,
        created_at=NOW,
        **extra,
    )


def test_the_table_shows_the_parameters_the_sweep_varies() -> None:
    assert _sweep().swept_parameters() == ["lr", "dropout", "optimizer"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-4, "0.0001"), (0.3, "0.3"), (64, "64"), (True, "True"), ("head", "head")],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(("done", "of", "eta"), [(0, 5, None), (2, 5, 90.0), (5, 5, 0.0)])
def test_eta_is_remaining_epochs_times_mean_epoch_time(
    done: int, of: int, eta: float | None
) -> None:
    assert eta_seconds(_run("r1", RunState.running, done, of)) == eta


def test_table_shows_each_slot_its_run_and_progress() -> None:
    runs = [
        _run("run00001", RunState.running, 2, worker="box-42-s0-w3"),
        _run("run00002", RunState.finished, 5),
    ]
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(build_table(_sweep(), SLOTS, {0: "run00001", 1: None}, runs))
    text = console.export_text()
    assert "worker" in text.splitlines()[1] + text.splitlines()[2]
    row = next(line for line in text.splitlines() if "run00001" in line)
    for cell in (
        "cpu",
        " w3 ",
        "lr=0.0001 dropout=0.3 optimizer=adam",
        "2/5",
        "52.0%",
        "512",
        "1:30",
    ):
        assert cell in row
    assert "data_dir" not in text
    assert "cuda:1" in text and "waiting for a run" in text
    assert "best val_accuracy 0.55" in text
    assert "running 1 finished 1" in text


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    ours = {"run00001": 0}
    with AgentView(console, _sweep(), SLOTS) as view:
        on_w3 = {"worker": "box-42-s0-w3"}
        view.update(
            {0: "run00001"},
            [_run("run00001", RunState.running, 1, **on_w3), _run("other", RunState.running, 1)],
            ours,
        )
        view.update({0: "run00001"}, [_run("run00001", RunState.running, 1, **on_w3)], ours)
        view.update({0: None}, [_run("run00001", RunState.finished, 3, **on_w3)], ours)
        view.summary("agent done: grid exhausted")
    assert out.getvalue().splitlines() == [
        "slot 0 run run00001 started on w3 lr=0.0001 dropout=0.3 optimizer=adam",
        "slot 0 run run00001 epoch 1/5 val_accuracy 51.0% best 51.0% 512 img/s",
        "slot 0 run run00001 epoch 2/5 val_accuracy 52.0% best 52.0% 512 img/s",
        "slot 0 run run00001 epoch 3/5 val_accuracy 53.0% best 53.0% 512 img/s",
        "slot 0 run run00001 finished val_accuracy 0.53",
        "agent done: grid exhausted",
    ]


def test_plain_lines_for_a_run_requeued_between_updates() -> None:
    out = io.StringIO()
    with AgentView(Console(file=out, force_terminal=False, width=200), _sweep(), SLOTS) as view:
        view.update(
            {1: None},
            [_run("run00003", RunState.pending, reason="agent stopped (SIGTERM)")],
            {"run00003": 1},
        )
    assert out.getvalue().splitlines() == [
        "slot 1 run run00003 started lr=0.0001 dropout=0.3 optimizer=adam",
        "slot 1 run run00003 requeued (agent stopped (SIGTERM))",
    ]


def test_live_table_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with AgentView(console, _sweep(), SLOTS) as view:
        assert view.live is not None
        view.update({0: "run00001"}, [_run("run00001", RunState.running, 2)], {"run00001": 0})
    assert "run00001" in out.getvalue()
    assert "lr=0.0001" in out.getvalue()
    assert view.live is None


# -- program sweeps: the user's own script, its metric and parameters -------------------

PROGRAM_SPEC: dict[str, Any] = {
    "program": "train.py",
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {
        "lr": {"values": [0.5, 2.0]},
        "optimizer": {"parameters": {"name": {"values": ["adam", "sgd"]}, "beta": {"value": 0.9}}},
    },
}


def _program_sweep(metric: str | None = "loss") -> Sweep:
    return _sweep().model_copy(
        update={
            "spec": PROGRAM_SPEC,
            "kind": "program",
            "metric_name": metric,
            "metric_goal": "minimize",
        }
    )


def _program_run(run_id: str, state: RunState, losses: list[float], **extra: Any) -> Run:
    """A program run as the store has it: each row the script logged, with wandb's `_step`."""
    history = [
        {"epoch": step + 1, "_step": step, "loss": loss, "acc": 1 - loss}
        for step, loss in enumerate(losses)
    ]
    return Run(
        id=run_id,
        sweep_id="sw1",
        state=state,
        config={"lr": 0.5, "name": "adam", "beta": 0.9},
        history=history,
        metric=min(losses, default=None),
        epochs=len(losses),
        created_at=NOW,
        **extra,
    )


def _table_text(sweep: Sweep, runs: list[Run]) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(build_table(sweep, SLOTS, {0: runs[0].id, 1: None}, runs))
    return console.export_text()


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.split("│")[1:-1]]


def test_a_program_sweeps_table_shows_its_parameters_steps_and_metric() -> None:
    text = _table_text(_program_sweep(), [_program_run("run00001", RunState.running, [0.5, 0.7])])
    header = " ".join(text.splitlines()[1:4])
    for column in ("config", "step", "loss", "best"):
        assert column in header, column
    for trainer_only in ("val acc", "img/s", "ETA", "%"):
        assert trainer_only not in text, trainer_only
    row = next(line for line in text.splitlines() if "run00001" in line)
    assert _cells(row)[4:] == ["lr=0.5 name=adam", "2", "0.7", "0.5"]
    assert "best loss 0.5" in text and "beta" not in text


def test_a_sweep_without_a_metric_shows_no_metric_column_and_no_best() -> None:
    text = _table_text(_program_sweep(None), [_program_run("run00001", RunState.running, [0.5])])
    assert "best" not in text and "None" not in text
    row = next(line for line in text.splitlines() if "run00001" in line)
    assert _cells(row)[4:] == ["lr=0.5 name=adam", "1"]


@pytest.mark.parametrize(
    ("metric", "step_line", "end_line"),
    [
        ("loss", "step 1 loss 0.5", "failed loss 0.5"),
        (None, "step 1 loss 0.5 acc 0.5", "failed"),
    ],
)
def test_plain_lines_of_a_program_run(metric: str | None, step_line: str, end_line: str) -> None:
    out = io.StringIO()
    reason = "program exited with code 3: Traceback\n  File 'train.py'\nValueError: lr too large"
    with AgentView(
        Console(file=out, force_terminal=False, width=200), _program_sweep(metric), SLOTS
    ) as view:
        failed = _program_run("run00001", RunState.failed, [0.5], reason=reason)
        view.update({0: None}, [failed], {"run00001": 0})
    assert out.getvalue().splitlines() == [
        "slot 0 run run00001 started lr=0.5 name=adam",
        f"slot 0 run run00001 {step_line}",
        f"slot 0 run run00001 {end_line} (program exited with code 3: Traceback … "
        "ValueError: lr too large)",
    ]
