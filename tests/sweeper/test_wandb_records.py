"""sweeper.wandb.records: W&B's sweep and run records as sweeper's states, history and runs."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sweeper.models import RunState, SweepState
from sweeper.wandb.client import RunRecord
from sweeper.wandb.records import history, run_from_record, run_state, sweep_state


@pytest.mark.parametrize(
    ("state", "written", "ours"),
    [
        ("running", None, RunState.running),
        ("finished", None, RunState.finished),
        ("finished", "stopped", RunState.stopped),
        ("failed", "crashed", RunState.crashed),
        ("failed", None, RunState.failed),
        ("crashed", None, RunState.crashed),
        ("killed", None, RunState.stopped),
        ("preempted", "pending", RunState.pending),
        ("something-new", None, RunState.crashed),
    ],
)
def test_w_and_b_run_states_map_to_ours(state: str, written: str | None, ours: RunState) -> None:
    summary = {} if written is None else {"sweeper_state": written}
    assert run_state(RunRecord(id="r", state=state, summary=summary)) == ours


def test_history_drops_wandb_keys_and_keeps_the_last_row_per_epoch() -> None:
    rows = [
        {"_step": 0, "epoch": 1, "val_accuracy": 0.1},
        {"_step": 1, "epoch": 1, "val_accuracy": 0.2},  # a resumed run logs epoch 1 again
        {"_step": 2, "epoch": 2, "val_accuracy": 0.3, "_runtime": 4},
        {"_step": 3, "system/gpu": 1.0},
    ]
    assert history(rows) == [{"epoch": 1, "val_accuracy": 0.2}, {"epoch": 2, "val_accuracy": 0.3}]


@pytest.mark.parametrize(
    ("state", "ours"),
    [("RUNNING", SweepState.running), ("PENDING", SweepState.running), ("paused", SweepState.paused),
     ("CANCELED", SweepState.canceled), ("FAILED", SweepState.finished), ("NEW", SweepState.running)],
)  # fmt: skip
def test_w_and_b_sweep_states_map_to_ours(state: str, ours: SweepState) -> None:
    assert sweep_state(state) == ours


@pytest.mark.parametrize(
    ("goal", "best"), [("maximize", 0.7), ("minimize", 0.4)]
)  # fmt: skip
def test_a_run_known_only_to_w_and_b_takes_its_best_epoch(goal: str, best: float) -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    record = RunRecord(
        id="r1", state="finished", config={"lr": {"value": 0.01}}, created_at=created,
        history=[{"epoch": 1, "val_accuracy": 0.4}, {"epoch": 2, "val_accuracy": 0.7}],
        summary={"val_accuracy": 0.7, "_runtime": 3, "sweeper_reason": "done"},
    )  # fmt: skip
    run = run_from_record("s1", record, "val_accuracy", goal)
    assert (run.id, run.sweep_id, run.state, run.epochs, run.metric) == (
        "r1", "s1", RunState.finished, 2, best,
    )  # fmt: skip
    assert run.summary == {"val_accuracy": 0.7} and run.reason == "done"


def test_without_epochs_the_summary_gives_the_metric() -> None:
    record = RunRecord(id="r2", state="crashed", summary={"val_accuracy": 0.5})
    run = run_from_record("s1", record, "val_accuracy", "maximize")
    assert (run.metric, run.epochs, run.state) == (0.5, 0, RunState.crashed)
