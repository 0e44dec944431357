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
