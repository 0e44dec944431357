"""W&B's records as sweeper's domain types: sweep and run states, per-epoch history, the
summary, and a Run made from a W&B run alone (one that no worker of this host claimed)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from sweeper import engine
from sweeper.models import Run, RunState, SweepState
from sweeper.run_config import flatten_config
from sweeper.wandb.client import RunRecord

#: W&B sweep states (upper case on the server) as ours.
SWEEP_STATES = {
    "RUNNING": SweepState.running,
    "PENDING": SweepState.running,
    "PAUSED": SweepState.paused,
    "CANCELED": SweepState.canceled,
    "FINISHED": SweepState.finished,
    "FAILED": SweepState.finished,
    "CRASHED": SweepState.finished,
}
#: Our sweep states as W&B's.
TO_WANDB_STATE = {
    SweepState.running: "RUNNING",
    SweepState.paused: "PAUSED",
    SweepState.canceled: "CANCELED",
    SweepState.finished: "FINISHED",
}
#: W&B run states as ours; `sweeper_state` in the summary refines them (see `run_state`).
RUN_STATES = {
    "running": RunState.running,
    "pending": RunState.pending,
    "preempting": RunState.pending,
    "preempted": RunState.pending,
    "finished": RunState.finished,
    "crashed": RunState.crashed,
    "failed": RunState.failed,
    "killed": RunState.stopped,
}
#: Summary keys sweeper writes next to the trainer's result.
STATE_KEY = "sweeper_state"
REASON_KEY = "sweeper_reason"

_EPOCH_KEYS = re.compile(r"^[A-Za-z]")


def sweep_state(wandb_state: str) -> SweepState:
    """A W&B sweep state as ours (an unknown one counts as running).

    >>> sweep_state("paused"), sweep_state("CRASHED")
    (<SweepState.paused: 'paused'>, <SweepState.finished: 'finished'>)
    """
    return SWEEP_STATES.get(wandb_state.upper(), SweepState.running)


def history(rows: Iterable[Mapping[str, Any]], program: bool = False) -> list[dict[str, Any]]:
    """Per-epoch metrics from W&B history rows: wandb's `_step`-like keys dropped, the last
    row of each epoch kept (a resumed run logs its epochs again), in epoch order. A
    `program` run's row without `epoch` (its script logs what it likes) is epoch `_step` + 1,
    as the worker counts a program's steps; the trainer's other rows (system metrics) go.

    >>> history([{"_step": 0, "epoch": 1, "acc": 0.5}, {"epoch": 1, "acc": 0.6}])
    [{'epoch': 1, 'acc': 0.6}]
    >>> history([{"_step": 0, "score": 0.5}, {"_step": 1, "score": 0.7}], program=True)
    [{'score': 0.5, 'epoch': 1}, {'score': 0.7, 'epoch': 2}]
    """
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        metrics = {k: v for k, v in row.items() if _EPOCH_KEYS.match(str(k)) and v is not None}
        step = row.get("_step")
        if program and "epoch" not in metrics and isinstance(step, int):
            metrics["epoch"] = step + 1
        epoch = metrics.get("epoch")
        if isinstance(epoch, int | float) and not isinstance(epoch, bool):
            by_epoch[int(epoch)] = metrics
    return [by_epoch[e] for e in sorted(by_epoch)]


def summary(values: Mapping[str, Any]) -> dict[str, Any]:
    """A W&B summary without wandb's `_` keys and sweeper's own state keys."""
    return {
        k: v
        for k, v in values.items()
        if not str(k).startswith("_") and k not in (STATE_KEY, REASON_KEY)
    }


def run_state(record: RunRecord) -> RunState:
    """W&B's state, refined by what sweeper wrote: W&B has no 'stopped', and a run sweeper
    ended as crashed shows as failed there (exit code 1)."""
    written = record.summary.get(STATE_KEY)
    state = RUN_STATES.get(record.state.lower(), RunState.crashed)
    if (
        state in (RunState.finished, RunState.failed, RunState.pending)
        and written in RunState.__members__
    ):
        return RunState(written)
    return state


def run_from_record(
    sweep_id: str, record: RunRecord, metric_name: str | None, goal: str, program: bool = False
) -> Run:
    """A Run from W&B's record alone: its metric is a trainer run's best epoch, else the
    summary's; a program run's is the summary's (W&B's meaning)."""
    epochs = history(record.history, program)
    final = summary(record.summary)
    best = None
    if metric_name is not None:
        if not program:
            best = engine.best_metric(epochs, metric_name, goal)
        if best is None:
            best = engine.better(None, final.get(metric_name), goal)
    return Run(
        id=record.id,
        sweep_id=sweep_id,
        state=run_state(record),
        config=flatten_config(record.config),
        metric=best,
        epochs=len(epochs),
        history=epochs,
        summary=final,
        reason=record.summary.get(REASON_KEY),
        created_at=record.created_at or datetime.now(timezone.utc),
    )
