"""The in-process agent behind `sweeper.agent(sweep_id, function=f)`: W&B's function mode, offline.

It does per run what wandb's own function agent does (`wandb.agent(sweep_id, function=f)`,
wandb/agents/pyagent.py, `Agent._run_job`): the run's parameters go to the YAML that a
bare `wandb.init()` reads, `WANDB_SWEEP_ID`, `WANDB_RUN_ID` and `WANDB_SWEEP_PARAM_PATH`
are set, wandb is torn down so that `wandb.init()` reads them afresh, `f()` runs in a
thread of its own, then `wandb.finish()` closes the run (`exit_code=1` when `f` raised).
An exception in `f` is printed with its traceback and fails the run, with the exception
as its reason; the agent goes on with the next run. `count` counts the runs `f` was
called for, failed ones included; `max_consecutive_failed_runs` stops the agent after
that many failures in a row. Ctrl-C puts the current run back in the queue and returns.

What differs, because sweeper is the controller: runs are claimed from sweeper's backend
(atomically, so any number of agents and `sweeper agent` processes can share a sweep);
the run logs offline under the sweep's home; what it logs is read from its `.wandb`
file while it runs (`agent.program.MetricsFeed`), so hyperband sees it; the backend hears
a heartbeat while `f` runs. A stop (hyperband, pause, cancel, a lost lease) raises
`RunStopped` in `f`'s thread, as W&B's agent raises an exception in its job thread; it is
a BaseException so that an `except Exception` in `f` does not swallow it. W&B's
wall-clock "flapping" heuristics (3 failures in the first minute) are left out.

A `FunctionWorker` is an `agent.worker.Worker` (its heartbeat thread, stop request and
the way a stopped run ends) whose run calls `f` instead of a trainer or a script.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from agent.program import MetricsFeed, nest_config, sweep_environment
from agent.supervisor import RECLAIM_S, AgentSummary
from agent.worker import PROGRAM_POLL_S, Worker, _control_reason, error_line
from sweeper.environ import scoped_environ
from sweeper.locate import open_backend
from sweeper.models import Control, RunState
from sweeper.paths import Home

log = logging.getLogger("agent.function")

#: Why a run was put back in the queue when Ctrl-C reached the agent.
CTRL_C_REASON = "agent stopped (Ctrl-C)"


class RunStopped(BaseException):
    """Raised in the function's thread when its run must stop (hyperband, pause, cancel)."""


class FunctionCall(threading.Thread):
    """`function()` in a thread of its own, which `interrupt` can stop."""

    def __init__(self, function: Callable[[], Any]) -> None:
        super().__init__(name="sweep-function", daemon=True)
        self.function = function
        self.error: BaseException | None = None
        self._interrupted = False

    def run(self) -> None:
        try:
            try:
                self.function()
            except BaseException as exc:  # the run's outcome, reported by the agent
                self.error = exc
        except RunStopped:  # an interruption that landed after `function` had returned
            pass

    def interrupt(self) -> None:
        """Raise `RunStopped` in the thread at its next Python instruction (once)."""
        if self._interrupted or not self.is_alive() or self.ident is None:
            return
        self._interrupted = True
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self.ident), ctypes.py_object(RunStopped)
        )


class FunctionWorker(Worker):
    """A worker whose runs call `function` in this process."""

    def __init__(
        self, function: Callable[[], Any], home: Home, backend: str, name: str, heartbeat_s: float
    ) -> None:
        super().__init__(home, backend, trainer="", worker=name, heartbeat_s=heartbeat_s)
        self.function = function
        self.backend = open_backend(backend, home)
        self.interrupted = False

    def _train(self, run_id: str) -> str:
        import wandb

        assert self.backend is not None
        run = self.backend.get_run(run_id)
        sweep = self.backend.get_sweep(run.sweep_id)
        if self.stop.event.is_set():
            return self._end(run_id, None)
        args = nest_config(sweep.spec.get("parameters") or {}, run.config)
        env = sweep_environment(self.home.wandb_dir, sweep.id, run_id, args)
        feed = MetricsFeed(self.backend, run_id, self.name, self.home.wandb_dir, sweep.spec)
        with scoped_environ(env):
            wandb.teardown()  # as W&B's agent: the next wandb.init() reads this run's environment
            call = FunctionCall(self.function)
            call.start()
            self._follow(call, feed)
            wandb.finish(exit_code=0 if call.error is None else 1)
            # The run's last records reach its `.wandb` file when wandb's service closes it.
            wandb.teardown()
        if self.stop.kind != Control.lost:
            self._report(feed.poll())
        summary = feed.summary()
        if self.stop.kind is not None:
            return self._end(run_id, summary)
        if call.error is not None:
            traceback.print_exception(call.error, file=sys.stderr)
            self.backend.fail_run(run_id, self.name, error_line(call.error))
            return RunState.failed.value
        self.backend.finish_run(run_id, self.name, summary)
        return RunState.finished.value

    def _follow(self, call: FunctionCall, feed: MetricsFeed) -> None:
        """Until `call` returns: report what it logs, and stop it when the run must stop."""
        while call.is_alive():
            try:
                call.join(PROGRAM_POLL_S)
                if self.stop.kind != Control.lost:
                    self._report(feed.poll())
            except KeyboardInterrupt:
                self.interrupted = True
                self.stop.request(Control.pause, CTRL_C_REASON, interrupt=True)
            if self.stop.event.is_set():
                call.interrupt()

    def _report(self, answer: tuple[Control, str] | None) -> None:
        if answer is not None:
            control, detail = answer
            self.stop.request(control, _control_reason(control, detail), interrupt=True)


def run_function_agent(
    sweep_id: str,
    function: Callable[[], Any],
    *,
    home: Home,
    backend: str = "local",
    count: int | None = None,
    max_consecutive_failed_runs: int | None = None,
    heartbeat_s: float = 10.0,
) -> AgentSummary:
    """Call `function` for run after run of `sweep_id` until the sweep, `count`, failures or
    Ctrl-C say stop; return what the agent did."""
    started_at = time.monotonic()
    summary = AgentSummary(sweep_id=sweep_id)
    name = f"{socket.gethostname().split('.')[0]}-{os.getpid()}-fn"
    worker = FunctionWorker(function, home, backend, name, heartbeat_s)
    assert worker.backend is not None
    failures = 0
    try:
        while True:
            if count is not None and summary.started >= count:
                summary.reason = f"count {count} reached"
                break
            claim = worker.backend.claim_run(sweep_id, name, lease_s=3 * heartbeat_s)
            if claim.run is None:
                state = worker.backend.get_sweep(sweep_id).state.value
                if claim.done or state != "running":
                    summary.reason = claim.reason or f"sweep {state}"
                    break
                time.sleep(RECLAIM_S)  # other agents still train the last configs
                continue
            summary.started += 1
            log.info("run %s: config %s", claim.run.id, claim.run.config)
            state = worker.run(claim.run.id)
            counted = {"pending": "requeued", "lost": "crashed"}.get(state, state)
            setattr(summary, counted, getattr(summary, counted) + 1)
            if worker.interrupted:
                summary.reason = "Ctrl-C"
                break
            failures = failures + 1 if state == RunState.failed.value else 0
            if max_consecutive_failed_runs is not None and failures >= max_consecutive_failed_runs:
                last = worker.backend.get_run(claim.run.id).reason
                summary.reason, summary.ok = f"{failures} consecutive failed runs: {last}", False
                break
    finally:
        import wandb

        wandb.teardown()  # a later wandb.init() must not find this agent's sweep settings
        worker.backend.close()
        summary.wall_seconds = time.monotonic() - started_at
    return summary
