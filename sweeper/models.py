"""The domain types every part of sweeper speaks: sweeps, runs, their states, claims and the
control a worker receives. Backends store them, the engine reads them, the agent and the
reports show them; this module imports none of those."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field


class SweepState(str, Enum):
    running = "running"
    paused = "paused"
    finished = "finished"
    canceled = "canceled"


class RunState(str, Enum):
    pending = "pending"
    running = "running"
    finished = "finished"
    failed = "failed"
    crashed = "crashed"
    stopped = "stopped"


#: States a run never leaves.
TERMINAL_RUN_STATES = frozenset(
    {RunState.finished, RunState.failed, RunState.crashed, RunState.stopped}
)
#: How many times a crashed run's config is queued again before it is failed.
MAX_CRASH_RETRIES = 2


class Control(str, Enum):
    """What a worker must do after reporting: go on, or stop its run (and why)."""

    proceed = "proceed"
    stop = "stop"  # early termination (hyperband); the run ends as `stopped`
    pause = "pause"  # sweep paused: the run is re-queued
    cancel = "cancel"  # sweep canceled: the run ends as `stopped`
    lost = "lost"  # the run is no longer this worker's (reaped as crashed); drop it


#: The states a sweep may be set to from each state a user can change (`pause`, `resume`,
#: `cancel`); finished and canceled sweeps are final.
SWEEP_TRANSITIONS = {
    SweepState.running: {SweepState.paused, SweepState.canceled, SweepState.finished},
    SweepState.paused: {SweepState.running, SweepState.canceled, SweepState.finished},
}
#: What a sweep's state tells the workers of its running runs.
SWEEP_CONTROL = {SweepState.paused: Control.pause, SweepState.canceled: Control.cancel}


class Sweep(BaseModel):
    """A sweep as every backend describes it."""

    id: str
    name: str
    backend: str
    state: SweepState
    method: str
    metric_name: str | None = Field(
        description="The metric the sweep optimizes; None for a grid or random sweep without one."
    )
    metric_goal: Literal["maximize", "minimize"]
    kind: Literal["trainer", "program"] = Field(
        "trainer",
        description="trainer: runs of the built-in trainer; program: the user's own script or "
        "function (a function sweep's spec names no program, so ask this, not the spec).",
    )
    run_cap: int | None = None
    spec: dict[str, Any] = Field(description="The sweep YAML as loaded, unchanged.")
    spec_path: str | None = None
    url: str | None = Field(default=None, description="W&B sweep page, for the wandb backend.")
    created_at: datetime
    run_counts: dict[str, int] = Field(default_factory=dict, description="Runs by state.")

    @property
    def for_function(self) -> bool:
        """A program sweep with nothing to start (made by `sweeper.sweep(config)` for a
        function): only `sweeper.agent(id, function=f)` runs it.

        >>> Sweep(id="s", name="s", backend="local", state="running", method="grid",
        ...       metric_name=None, metric_goal="minimize", created_at=datetime.now(),
        ...       kind="program", spec={"parameters": {}}).for_function
        True
        """
        return self.kind == "program" and "program" not in self.spec and "command" not in self.spec

    def swept_parameters(self) -> list[str]:
        """Names of the parameters the sweep varies, in spec order: the columns worth showing.

        The one definition, `sweeper.spec.swept_parameters`: nested groups walked, a
        parameter with one value (`value:`, or `values:` of one element) fixed. It reads the
        stored mapping, so a W&B sweep made outside sweeper answers too.

        >>> Sweep(id="s", name="s", backend="local", state="running", method="grid",
        ...       metric_name="val_loss", metric_goal="minimize", created_at=datetime.now(),
        ...       spec={"parameters": {"lr": {"values": [0.1, 0.01]}, "epochs": {"value": 5}}},
        ... ).swept_parameters()
        ['lr']
        """
        from sweeper.spec.swept import swept_parameters

        return swept_parameters(self.spec.get("parameters"))


class Run(BaseModel):
    """One training run of a sweep."""

    id: str
    sweep_id: str
    state: RunState
    config: dict[str, Any] = Field(description="Flat parameter values given to the trainer.")
    metric: float | None = Field(
        default=None,
        description="The sweep metric: a trainer run's best epoch; a program run's summary "
        "value as W&B has it (the last one logged, unless the script set the summary).",
    )
    epochs: int = Field(default=0, description="Epochs reported so far.")
    history: list[dict[str, Any]] = Field(
        default_factory=list, description="Per-epoch metrics, in order."
    )
    summary: dict[str, Any] = Field(
        default_factory=dict, description="Final result (TrainResult without history)."
    )
    reason: str | None = Field(default=None, description="Why the run stopped, failed or crashed.")
    worker: str | None = None
    host: str | None = Field(default=None, description="The host whose worker ran it last.")
    attempt: int = Field(
        default=0, description="0 for a first try, n for the n-th re-queue after a crash."
    )
    retry_of: str | None = None
    search_info: dict[str, Any] | None = Field(
        default=None, description="Why the engine proposed this config."
    )
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None


class Claim(BaseModel):
    """The answer to `claim_run`: a run to train, or why there is none."""

    run: Run | None = None
    done: bool = Field(
        default=False, description="True when the sweep will never hand out another run."
    )
    reason: str | None = Field(
        default=None,
        description="Why no run: 'grid exhausted', 'run_cap reached', 'sweep paused', ...",
    )
