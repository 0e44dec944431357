"""The backend interface: where sweeps, runs and their metrics live.

Concurrency contract (read this before implementing a backend):

- Any number of agent processes, on this host or others, may call one backend at
  once. `claim_run` is the only way a run becomes `running`, and two callers never
  get the same run: the claim is one atomic step (one transaction on the local store).
- A `running` run is owned by the worker that claimed it. Only that worker reports
  epochs, heartbeats and ends it; any process may mark it `crashed` once its
  heartbeat is older than its lease (`reap_stale`). A worker whose run was reaped
  learns it from the `Control` that `heartbeat` / `log_epoch` return and stops.
- State changes are compare-and-set: ending a run that is no longer `running` (another
  process reaped or re-queued it) returns False instead of raising.
- Derived queries (best run, counts) are concrete methods here, built on the primitives.

Errors a user can cause raise `sweeper.errors.SweeperError` subclasses: `NotFoundError`
for unknown ids, `StoreError` for an unusable store, `BackendError` for a backend
that cannot be reached.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from sweeper.spec import SweepSpec


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


class Sweep(BaseModel):
    """A sweep as every backend describes it."""

    id: str
    name: str
    backend: str
    state: SweepState
    method: str
    metric_name: str
    metric_goal: Literal["maximize", "minimize"]
    run_cap: int | None = None
    spec: dict[str, Any] = Field(description="The sweep YAML as loaded, unchanged.")
    spec_path: str | None = None
    url: str | None = Field(default=None, description="W&B sweep page, for the wandb backend.")
    created_at: datetime
    run_counts: dict[str, int] = Field(default_factory=dict, description="Runs by state.")


class Run(BaseModel):
    """One training run of a sweep."""

    id: str
    sweep_id: str
    state: RunState
    config: dict[str, Any] = Field(description="Flat parameter values given to the trainer.")
    metric: float | None = Field(
        default=None, description="Best value of the sweep metric over the epochs so far."
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


class Backend(ABC):
    """Stores sweeps and runs and decides what runs next."""

    name: str

    @abstractmethod
    def create_sweep(self, spec: SweepSpec, name: str | None = None) -> Sweep:
        """Register a validated spec as a new sweep in state `running`.

        Args:
            spec: a spec returned by `sweeper.spec.load_spec`.
            name: overrides the spec's `name`.
        Returns:
            The new sweep. Nothing is stored if this raises.
        """

    @abstractmethod
    def list_sweeps(self) -> list[Sweep]:
        """Every sweep this backend knows, newest first, with `run_counts` filled in."""

    @abstractmethod
    def get_sweep(self, ref: str) -> Sweep:
        """The sweep whose id or unique name is `ref`.

        Raises:
            NotFoundError: no such sweep, or the name is ambiguous.
        """

    @abstractmethod
    def set_sweep_state(self, sweep_id: str, state: SweepState) -> Sweep:
        """Pause, resume (back to running), cancel or finish a sweep.

        Canceling also ends the sweep's pending runs as `stopped`; running runs see
        `Control.cancel` at their next heartbeat or epoch.

        Raises:
            SweeperError: the transition is not allowed (resuming a canceled sweep).
        """

    @abstractmethod
    def claim_run(self, sweep_id: str, worker: str, lease_s: float = 60.0) -> Claim:
        """Atomically hand `worker` the next run: a re-queued pending run first, else a new
        config from the search engine. The run becomes `running`, owned by `worker`, who
        must heartbeat at least every `lease_s` seconds or any process may reap it.

        Returns:
            A Claim with the run, or with `run=None` and the reason; `done=True` when the
            sweep will never hand out another run (exhausted, capped, finished, canceled).
        """

    @abstractmethod
    def log_epoch(self, run_id: str, worker: str, metrics: dict[str, Any]) -> Control:
        """Record one epoch's metrics (keys as `trainer.EpochMetrics`), refresh the
        heartbeat, and say whether the run should go on (early termination, pause, cancel)."""

    @abstractmethod
    def heartbeat(self, run_id: str, worker: str) -> Control:
        """Mark `worker` alive on `run_id` and say whether the run should go on."""

    @abstractmethod
    def finish_run(
        self,
        run_id: str,
        worker: str,
        summary: dict[str, Any],
        state: RunState = RunState.finished,
        reason: str | None = None,
    ) -> bool:
        """End a running run as `finished` or `stopped` with its final summary.

        Returns:
            False if the run was no longer `running` for this worker (it was reaped).
        """

    @abstractmethod
    def fail_run(self, run_id: str, worker: str, error: str, crashed: bool = False) -> bool:
        """End a running run as `failed` (it raised) or `crashed` (its process died).

        A crashed run's config is queued again as a new pending run, at most
        `MAX_CRASH_RETRIES` times; after that the run ends as `failed`.

        Returns:
            False if the run was no longer `running` for this worker.
        """

    @abstractmethod
    def requeue_run(self, run_id: str, worker: str, reason: str) -> bool:
        """Put an interrupted run (Ctrl-C, SIGTERM, pause) back to `pending` with its
        metrics cleared, so the next claim trains it from the start.

        Returns:
            False if the run was no longer `running` for this worker.
        """

    @abstractmethod
    def reap_stale(self) -> list[Run]:
        """Mark every running run whose last heartbeat is older than its lease as crashed
        (with re-queue, as `fail_run(crashed=True)`). Safe to call from any process at
        any time; a run another process reaped first is skipped.

        Returns:
            The runs this call marked crashed.
        """

    @abstractmethod
    def list_runs(self, sweep_id: str, with_history: bool = True) -> list[Run]:
        """Every run of a sweep, oldest first."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """One run with its history.

        Raises:
            NotFoundError: no such run.
        """

    def best_run(self, sweep_id: str) -> Run | None:
        """The finished or stopped run with the best metric under the sweep's goal."""
        sweep = self.get_sweep(sweep_id)
        scored = [
            r
            for r in self.list_runs(sweep_id, with_history=False)
            if r.state in (RunState.finished, RunState.stopped)
            and r.metric is not None
            and math.isfinite(r.metric)
        ]
        if not scored:
            return None
        sign = 1.0 if sweep.metric_goal == "maximize" else -1.0
        return max(scored, key=lambda r: sign * (r.metric or 0.0))

    def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release connections; the default holds none."""
