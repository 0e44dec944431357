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
from typing import TYPE_CHECKING, Any

from sweeper.models import Claim, Control, Run, RunState, Sweep, SweepState

if TYPE_CHECKING:
    from sweeper.spec import SweepSpec


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

    def program_env(self, run_id: str) -> dict[str, str]:
        """What a program run's script needs in its environment beyond the sweep's and the
        run's ids and parameter file (which the agent sets); none for a local store."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release connections; the default holds none."""
