"""The supervisor: claims runs, hands them to worker processes, watches them, stops cleanly.

One loop, one thread. Per slot it keeps one worker process (`active`) that trains run
after run: when a run is done, the supervisor claims the next one and hands it to the
same warm process, so the gap between two runs is the claim. When a fresh process is
owed (agent.recycle decides, and the agent log says why), the old one is sent home and
a new one takes the slot; where that is foreseeable (`--fresh-process`, a trainer that
opts out of reuse, the last run a process may train), a warm `spare` that has already
imported torch, the trainer and wandb is started while the current run trains. The
supervisor claims each run itself, under the name of the worker that will train it,
only once that worker is ready; the lease (3 heartbeats) therefore never runs out
during a cold start. Claims are made when the slot's run ends, not ahead: a bayes
proposal then sees the result of the run before it. That makes `--count`, the run cap
and crash detection local decisions:

- a worker that exits with its run still `running` died (kill -9, segfault, OOM killer):
  the supervisor fails the run as crashed (the backend re-queues its config);
- Ctrl-C / SIGTERM: workers get SIGTERM and re-queue their runs at the next batch; a
  second Ctrl-C SIGKILLs them and the supervisor re-queues their runs itself;
- if the supervisor itself dies, its workers die with it (PR_SET_PDEATHSIG) and the next
  process that claims from the store reaps their runs once the lease has run out.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field
from rich.console import Console

from agent.process import WorkerProcess
from agent.recycle import RecyclePolicy
from agent.slots import Slot, parse_slots
from agent.ui import AgentView
from sweeper.backends.base import Backend
from sweeper.errors import AgentError
from sweeper.locate import open_backend
from sweeper.models import Claim, Run, RunState, SweepState
from sweeper.paths import Home, private_dir

log = logging.getLogger(__name__)

#: Longest wait between loop turns. A worker's message (ready, a run done) or exit ends the
#: wait at once (`Supervisor._nap`); the tick bounds how late signals and timers are seen.
TICK_S = 0.05
#: Seconds between claims when the sweep has nothing to hand out yet.
RECLAIM_S = 1.0
#: Seconds between redraws of the table from the store.
REFRESH_S = 1.0
#: A worker that exits this many times in a row before it is ready means it cannot start.
MAX_START_FAILURES = 3
#: Seconds workers get to re-queue their runs after SIGTERM before they are killed.
GRACE_S = 60.0


class AgentSummary(BaseModel):
    """What one agent did, and why it exited."""

    sweep_id: str
    started: int = Field(default=0, description="Runs this agent handed to a worker.")
    finished: int = 0
    stopped: int = Field(default=0, description="Early-terminated (hyperband) or canceled.")
    failed: int = 0
    crashed: int = Field(
        default=0, description="Worker died without reporting; the config was re-queued."
    )
    requeued: int = Field(
        default=0, description="Interrupted (pause, Ctrl-C, SIGTERM) and put back in the queue."
    )
    reason: str = Field(default="", description="Why the agent exited.")
    ok: bool = Field(default=True, description="False when it stopped on consecutive failures.")
    wall_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The process exit status for `sweeper agent`: 1 after consecutive failures, else 0."""
        return 0 if self.ok else 1

    def line(self) -> str:
        """One line for the end of `sweeper agent`.

        >>> AgentSummary(sweep_id="s1", started=2, finished=2, reason="grid exhausted", wall_seconds=3.0).line()
        'agent done: grid exhausted; 2 runs: 2 finished, 0 stopped, 0 failed, 0 crashed, 0 requeued in 3s'
        """
        return (
            f"agent done: {self.reason}; {self.started} runs: {self.finished} finished, "
            f"{self.stopped} stopped, {self.failed} failed, {self.crashed} crashed, "
            f"{self.requeued} requeued in {self.wall_seconds:.0f}s"
        )


class _SlotState:
    """The processes of one slot: the one that trains (or waits, warm, for the next run),
    its spare, and those retired that are still exiting."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.active: WorkerProcess | None = None
        self.spare: WorkerProcess | None = None
        self.retiring: list[WorkerProcess] = []
        self.next_claim_at = 0.0
        self.start_failures = 0


class Supervisor:
    """Runs one agent on one sweep; see the module docstring. Use `run()` once."""

    def __init__(
        self,
        sweep_id: str,
        *,
        home: Home,
        backend: str,
        slots: list[Slot],
        count: int | None,
        max_failures: int,
        heartbeat_s: float,
        trainer: str,
        spare: bool,
        console: Console,
        recycle: RecyclePolicy,
        memory_probe: str = "agent.memory:measure",
    ) -> None:
        self.home, self.backend_name, self.trainer = home, backend, trainer
        self.recycle, self.memory_probe = recycle, memory_probe
        self.count, self.max_failures, self.heartbeat_s = count, max_failures, heartbeat_s
        self.use_spare, self.console = spare, console
        self.backend: Backend = open_backend(backend, home)
        self.sweep = self.backend.get_sweep(sweep_id)
        self.sweep_id = self.sweep.id
        self.slots = [_SlotState(s) for s in slots]
        self.summary = AgentSummary(sweep_id=self.sweep_id)
        self.ours: dict[str, int] = {}
        self.stopping: str | None = None
        self.signals = 0
        self._last_signal = "a signal"
        self.consecutive_failures = 0
        self._seq = 0
        self._name_prefix = f"{socket.gethostname().split('.')[0]}-{os.getpid()}"
        self._log_file: IO[bytes] | None = None
        #: Workers killed because their run went silent, with the reason their run crashed.
        self._hung: dict[str, str] = {}
        self._engine_import: threading.Thread | None = None

    # --- the loop -----------------------------------------------------------------

    def run(self) -> AgentSummary:
        """Train until the sweep, --count, a signal or failures say stop; return the summary."""
        began = time.monotonic()
        handled_signals = 0
        if self.backend_name == "local":
            # The local backend's first claim imports the sweep engine (wandb's `sweeps`,
            # scipy, scikit-learn: 1-2 s on an idle 2-core CPU, 10 s and more on a loaded
            # one). Imported now, it overlaps the first worker's start (torch) instead of
            # following it.
            self._engine_import = threading.Thread(
                target=_import_engine, name="engine-import", daemon=True
            )
            self._engine_import.start()
        with (
            _open_log(self.home.agent_log_path(self.sweep_id)) as self._log_file,
            self._signals(),
            AgentView(self.console, self.sweep, [s.slot for s in self.slots]) as view,
        ):
            try:
                next_refresh = 0.0
                while True:
                    if self.signals > handled_signals:
                        handled_signals = self.signals
                        self._on_signal(handled_signals)
                    for state in self.slots:
                        self._watch(state)
                    if self.stopping is None:
                        for state in self.slots:
                            self._fill(state)
                    if self.stopping is not None and not self._training():
                        break
                    if time.monotonic() >= next_refresh:
                        self._refresh(view)
                        next_refresh = time.monotonic() + REFRESH_S
                    self._nap()
            finally:
                self._shutdown()
                self._refresh(view)
                self.backend.close()
            self.summary.reason = self.stopping or ""
            self.summary.wall_seconds = round(time.monotonic() - began, 3)
            view.summary(self.summary.line())
        return self.summary

    def _refresh(self, view: AgentView) -> None:
        try:
            runs = self.backend.list_runs(self.sweep_id)
        except Exception as exc:  # a busy store must not stop the agent; the next refresh will do
            log.warning("cannot read runs for the table: %s", exc)
            return
        self._kill_hung(runs)
        assignments = {s.slot.index: s.active.run_id if s.active else None for s in self.slots}
        view.update(assignments, runs, self.ours)

    def _training(self) -> bool:
        return any(s.active is not None and s.active.run_id is not None for s in self.slots)

    def _stop(self, reason: str, ok: bool = True) -> None:
        """Stop claiming; the first reason is the one reported. Idle workers are sent home."""
        if self.stopping is None:
            self.stopping = reason
            self.summary.ok = ok
            self._note(f"stopping: {reason}")
        for state in self.slots:
            for worker in (state.active, state.spare):
                if worker is not None and worker.run_id is None:
                    worker.release()

    # --- slots ----------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> WorkerProcess:
        self._seq += 1
        assert self._log_file is not None
        args = [
            "--home", str(self.home.root),
            "--sweep", self.sweep_id,
            "--backend", self.backend_name,
            "--trainer", self.trainer,
            "--heartbeat-s", str(self.heartbeat_s),
            "--memory-probe", self.memory_probe,
        ]  # fmt: skip
        worker = WorkerProcess(
            slot, f"{self._name_prefix}-s{slot.index}-w{self._seq}", args, self._log_file
        )
        self._note(f"slot {slot.index}: started worker {worker.name} (pid {worker.pid})")
        return worker

    def _fill(self, state: _SlotState) -> None:
        """Keep a process ready for the slot; when the slot is free, claim a run for it."""
        active = state.active
        if state.spare is None and (active is None or self._spare_wanted(active)):
            state.spare = self._spawn(state.slot)
        worker = active if active is not None else state.spare
        if worker is None or not worker.idle:
            return
        if time.monotonic() < state.next_claim_at:
            return
        if self.count is not None and self.summary.started >= self.count:
            self._stop(f"--count {self.count} reached")
            return
        if self._engine_import is not None:
            self._engine_import.join()  # one import at a time: the claim would wait for it
            self._engine_import = None
        claim = self.backend.claim_run(self.sweep_id, worker.name, lease_s=3 * self.heartbeat_s)
        if claim.run is None:
            self._no_run(state, claim)
            return
        device = str(claim.run.config.get("device", "auto"))
        if worker is active:
            reason = self.recycle.reason(worker.facts, next_device=device)
            if reason is not None:  # the run goes back to the queue, for the fresh process
                self.backend.requeue_run(claim.run.id, worker.name, f"handed over: {reason}")
                self._retire(state, reason)
                return
        worker.assign(claim.run.id, device)
        if worker is state.spare:
            state.active, state.spare = worker, None
        self.ours[claim.run.id] = state.slot.index
        self.summary.started += 1
        self._note(f"slot {state.slot.index}: run {claim.run.id} -> {worker.name}")
        if self.count is not None and self.summary.started >= self.count:
            self._stop(f"--count {self.count} reached")

    def _spare_wanted(self, active: WorkerProcess) -> bool:
        """A spare is started while a run trains when its process will have to go after it."""
        return (
            self.use_spare
            and active.run_id is not None
            and self.recycle.due_after_current(active.facts)
        )

    def _retire(self, state: _SlotState, reason: str) -> None:
        """Send the slot's process home (it exits once idle); the spare or a new one follows."""
        worker = state.active
        assert worker is not None
        self._note(f"slot {state.slot.index}: fresh process owed, {worker.name} retires: {reason}")
        worker.release()
        state.retiring.append(worker)
        state.active = None

    def _no_run(self, state: _SlotState, claim: Claim) -> None:
        if claim.done:
            self._stop(claim.reason or "sweep done")
            return
        sweep_state = self.backend.get_sweep(self.sweep_id).state
        if sweep_state != SweepState.running:
            self._stop(claim.reason or f"sweep {sweep_state.value}")
            return
        state.next_claim_at = time.monotonic() + RECLAIM_S  # others still train the last configs

    def _watch(self, state: _SlotState) -> None:
        """Notice spares that could not start and workers whose run has ended."""
        spare = state.spare
        if spare is not None and spare.poll() is not None:
            state.spare = None
            spare.close()
            if spare.error is not None:
                raise AgentError(f"the worker cannot start: {spare.error}")
            if self.stopping is None:
                state.start_failures += 1
                if state.start_failures >= MAX_START_FAILURES:
                    raise AgentError(
                        f"workers of slot {state.slot.index} exit before they are ready "
                        f"({spare.exit_description()}); see {self.home.agent_log_path(self.sweep_id)}"
                    )
        elif spare is not None and spare.ready:
            state.start_failures = 0
        for old in list(state.retiring):
            if old.poll() is not None:
                state.retiring.remove(old)
                old.close()
        active = state.active
        if active is None:
            return
        code = active.poll()
        for run_id, _ in active.take_done():
            self._ended(active, run_id)
            reason = self.recycle.reason(active.facts)
            if self.stopping is not None:
                active.release()
            elif reason is not None:
                self._retire(state, reason)
        if code is not None and state.active is active:
            state.active = None
            active.close()
            if active.run_id is not None:
                run_id, ended = active.run_id, self._ended(active, active.run_id)
                active.facts.last_run, active.facts.last_state = run_id, ended
                reason = self.recycle.reason(active.facts)
                self._note(f"slot {state.slot.index}: fresh process owed: {reason}")
            elif not active.released and self.stopping is None:
                self._note(
                    f"slot {state.slot.index}: idle {active.name} {active.exit_description()}"
                )

    def _kill_hung(self, runs: list[Run]) -> None:
        """SIGKILL every active worker whose run has had no heartbeat for a whole lease.

        Such a worker is stopped or stuck below Python (its heartbeat thread cannot run):
        it would never exit, and the slot and the agent would wait for it forever. Its run
        is crashed (and its config re-queued) when `_ended` sees the worker gone.
        """
        lease = 3 * self.heartbeat_s
        now = time.time()
        by_id = {run.id: run for run in runs}
        for state in self.slots:
            worker = state.active
            run = by_id.get(worker.run_id or "") if worker is not None else None
            if worker is None or run is None or run.heartbeat_at is None:
                continue
            silent = now - run.heartbeat_at.timestamp()
            if silent > lease and worker.name not in self._hung:
                reason = f"worker hung: no heartbeat for {silent:.1f} s (lease {lease:g} s), killed"
                self._hung[worker.name] = reason
                self._note(f"run {run.id}: {reason}")
                worker.kill()

    def _ended(self, worker: WorkerProcess, run_id: str) -> str:
        """Count how the worker's run ended; clean up after a worker that died mid-run.

        Returns what it was counted as: finished, stopped, failed, crashed or requeued."""
        run = self.backend.get_run(run_id)
        state = run.state
        hung = self._hung.pop(worker.name, None)
        if state == RunState.running and run.worker == worker.name:
            if hung is None and (worker.killed_by_supervisor or self.signals):
                self.backend.requeue_run(
                    run.id, worker.name, "agent stopped before the run could re-queue itself"
                )
                state = RunState.pending
            else:
                reason = hung or worker.exit_description()
                self.backend.fail_run(run.id, worker.name, reason, crashed=True)
                state = RunState.crashed
                self._note(f"run {run.id}: {reason}")
                run.reason = reason
        counted = {
            RunState.finished: "finished",
            RunState.stopped: "stopped",
            RunState.failed: "failed",
            RunState.crashed: "crashed",
            RunState.pending: "requeued",
        }.get(state)
        if counted is None:  # still running under another worker: it was reaped and re-claimed
            counted = "crashed"
        setattr(self.summary, counted, getattr(self.summary, counted) + 1)
        self._note(f"run {run.id}: {counted}")
        if state in (RunState.failed, RunState.crashed):
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.max_failures:
                last = self.backend.get_run(run.id).reason or run.reason or state.value
                self._stop(f"{self.consecutive_failures} consecutive failures: {last}", ok=False)
                self._terminate_active()
        elif state in (RunState.finished, RunState.stopped):
            self.consecutive_failures = 0
        return counted

    # --- signals and shutdown ---------------------------------------------------------

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """Count SIGINT/SIGTERM while the loop runs; the loop acts on them (not the handler)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.signals += 1
            self._last_signal = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _on_signal(self, count: int) -> None:
        """First signal: runs re-queue at their next batch. Second: kill the workers now."""
        reason = f"stopped by {self._last_signal}"
        self._stop(reason)
        self.stopping = reason  # the signal is why runs were cut short, whatever came first
        if count == 1:
            self._terminate_active()
        else:
            self._note("second signal: killing workers")
            self._kill_all()

    def _terminate_active(self) -> None:
        for state in self.slots:
            for worker in _processes(state):
                worker.terminate()

    def _kill_all(self) -> None:
        """SIGKILL every worker now and re-queue their runs ourselves."""
        for state in self.slots:
            for worker in _processes(state):
                worker.kill()
        for state in self.slots:
            for worker in _processes(state):
                worker.wait()
                worker.poll()  # a run reported done just before the kill is not the agent's
                worker.close()
                for run_id, _ in worker.take_done():
                    self._ended(worker, run_id)
                if worker is state.active and worker.run_id is not None:
                    self._ended(worker, worker.run_id)
            state.active, state.spare, state.retiring = None, None, []

    def _shutdown(self) -> None:
        """Whatever happened: no worker outlives the agent and no run of ours stays running."""
        if any(_processes(s) for s in self.slots):
            self._stop(self.stopping or "agent error")
            self._terminate_active()
            deadline = time.monotonic() + GRACE_S
            while time.monotonic() < deadline and self.signals < 2 and self._alive():
                self._nap()
            self._kill_all()

    def _nap(self) -> None:
        """Wait a tick, or less: until a worker says something or exits (its status pipe
        is readable then). A slot's next run is claimed as soon as the last one's end is
        said, not at the next tick: ~25 ms sooner on average with a 50 ms tick."""
        handles = [w for s in self.slots for w in _processes(s) if w.listening]
        if handles:
            select.select(handles, [], [], TICK_S)
        else:
            time.sleep(TICK_S)

    def _alive(self) -> bool:
        return any(w.poll() is None for s in self.slots for w in _processes(s))

    def _note(self, message: str) -> None:
        """A line in the agent log (the workers' start-up output goes there too)."""
        log.info(message)
        if self._log_file is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                self._log_file.write(f"{stamp} supervisor {message}\n".encode())
            except OSError as exc:  # a full disk must not stop the agent: the store has the runs
                log.warning("cannot write the agent log: %s", exc)


def _import_engine() -> None:
    """Import what the local backend's first proposal imports (sweeper.engine.propose)."""
    try:
        import sweeps.bayes_search  # noqa: F401  (sweeps, scipy and scikit-learn's GP)
        import threadpoolctl  # noqa: F401
    except Exception as exc:  # the claim will import it again and report what is wrong
        log.warning("could not import the sweep engine ahead of the first claim: %s", exc)


def _processes(state: _SlotState) -> list[WorkerProcess]:
    """Every live handle of a slot: the active process, its spare, those retiring."""
    return [w for w in (state.active, state.spare, *state.retiring) if w is not None]


def _open_log(path: Path) -> IO[bytes]:
    """The agent log, user-only, unbuffered so that every line is written when noted.

    Raises AgentError when the home cannot be written (full disk, read-only file system).
    """
    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as e:
        raise AgentError(
            f"cannot write the agent log {path}: {e.strerror or e}. Free space there or "
            "choose another home with --home / SWEEPER_HOME."
        ) from None
    return os.fdopen(fd, "ab", buffering=0)


def run_agent(
    sweep_id: str,
    *,
    home: Home,
    backend: str = "local",
    gpus: str = "none",
    per_gpu: int = 1,
    count: int | None = None,
    max_failures: int = 3,
    heartbeat_s: float = 10.0,
    trainer: str = "trainer:train",
    console: Console | None = None,
    spare: bool = True,
    fresh_process: bool = False,
    max_runs_per_worker: int = 50,
    max_memory_growth_mb: float = 1024.0,
    memory_probe: str = "agent.memory:measure",
) -> AgentSummary:
    """Train runs of `sweep_id` on the given GPUs until the sweep is done or the agent is stopped.

    A slot's worker process trains run after run until agent.recycle says a fresh one is
    owed: `fresh_process=True` (one process per run, the behaviour before warm workers),
    `max_runs_per_worker` runs, a run that did not end cleanly, memory grown by more than
    `max_memory_growth_mb` MiB over the worker's baseline, or another device.
    `spare=False` starts a worker only when it is due (no warm spare), for benchmarks;
    `memory_probe` ('module:function') replaces the memory reading, for tests. Raises
    AgentError for what the user can fix (a GPU that is not there).
    """
    if count is not None and count < 1:
        raise AgentError(f"--count must be at least 1, got {count}.")
    if max_failures < 1:
        raise AgentError(f"--max-failures must be at least 1, got {max_failures}.")
    if heartbeat_s <= 0:
        raise AgentError(f"heartbeat interval must be positive, got {heartbeat_s}.")
    if max_runs_per_worker < 1:
        raise AgentError(f"runs per worker must be at least 1, got {max_runs_per_worker}.")
    if max_memory_growth_mb <= 0:
        raise AgentError(f"memory growth limit must be positive, got {max_memory_growth_mb}.")
    slots = parse_slots(gpus, per_gpu)
    home.ensure()
    supervisor = Supervisor(
        sweep_id,
        home=home,
        backend=backend,
        slots=slots,
        count=count,
        max_failures=max_failures,
        heartbeat_s=heartbeat_s,
        trainer=trainer,
        spare=spare,
        console=console or Console(),
        recycle=RecyclePolicy(
            fresh_process=fresh_process,
            max_runs=max_runs_per_worker,
            max_growth_mb=max_memory_growth_mb,
        ),
        memory_probe=memory_probe,
    )
    return supervisor.run()
