"""The worker process: trains the runs its supervisor hands it, one after another.

Started by the supervisor as `python -m agent.worker ...` with CUDA_VISIBLE_DEVICES set.
Protocol, one JSON object per line:

- worker -> supervisor, on the `--status-fd` pipe: `{"event": "ready", "reusable": ...}`
  once torch, the trainer and the backend are imported and the wandb helper is started
  (the worker is now a warm spare), or `{"event": "error", "message": ...}` if it cannot
  start (bad `--trainer`, ...); after each run, once it is reported to the backend and
  its memory freed, `{"event": "done", "run_id": ..., "state": ..., "memory": {...}}`.
- supervisor -> worker, on stdin: `{"run_id": ...}` (a run the supervisor claimed under
  this worker's name), or end of file: exit.

A worker takes run after run while its supervisor keeps handing them over; the
supervisor decides when the process has done enough (agent.recycle) and closes its
stdin. Per run, everything is fresh: the trainer builds its model, optimizer, schedule
and seeding from the config; the run gets its own log file, heartbeat, stop request and
wandb run (written by a helper process, sweeper.wandb.runlog, so that wandb neither
slows the training nor delays the next run). What stays warm is what the process
imported, its CUDA context and the trainer's bounded caches. A worker of a program
sweep (the user's script, one process per run) imports neither torch nor the trainer.
A trainer function opts out of reuse with a `reusable = False` attribute (then every
run gets a fresh process); without it, reuse is allowed, as the trainer contract says
`train` is pure.

The worker reports each run's end to the backend itself (finish, fail, requeue); the
supervisor only steps in when the process dies without doing so. SIGTERM stops the run
at the next batch boundary, re-queues it, and ends the process; SIGINT is ignored (a
terminal's Ctrl-C goes to the supervisor, which decides).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, Any, NoReturn

from agent.memory import MemoryReading, free_run_memory
from sweeper.backends.base import Backend
from sweeper.locate import open_backend
from sweeper.models import Control, Run, RunState, Sweep
from sweeper.paths import Home, private_dir

log = logging.getLogger("agent.worker")

#: Exit codes, for the agent log; the store, not the exit code, says how a run ended.
EXIT_OK = 0
EXIT_START_FAILED = 3

TrainFn = Callable[..., Any]
#: How often a program run's exit, stop requests and `.wandb` file are looked at.
PROGRAM_POLL_S = 0.1


def load_trainer(ref: str, option: str = "--trainer") -> TrainFn:
    """Resolve 'module:function' to the function; raise ValueError with a readable reason.

    >>> load_trainer("os.path:join")("a", "b")
    'a/b'
    """
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{option} {ref!r}: expected 'module:function', e.g. 'trainer:train'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{option} {ref!r}: cannot import {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{option} {ref!r}: {module_name!r} has no function {attr!r}")
    return fn


def is_reusable(train: TrainFn) -> bool:
    """Whether runs of `train` may follow each other in one process: unless it says
    `reusable = False`.

    >>> def leaky(config): ...
    >>> leaky.reusable = False
    >>> is_reusable(leaky), is_reusable(print)
    (False, True)
    """
    return getattr(train, "reusable", True) is not False


def error_line(exc: BaseException) -> str:
    """One line for the store: the exception type and the first line of its message.

    >>> error_line(ValueError("bad lr\\nmore"))
    'ValueError: bad lr'
    """
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class StopRequest:
    """Why the current run must stop early; the first reason wins.

    `interrupt=True` also sets the trainer's stop event (stop at the next batch);
    a stop decided in `on_epoch` only returns True so the trainer still evaluates.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.kind: Control | None = None
        self.reason: str | None = None
        self._lock = threading.Lock()

    def request(self, kind: Control, reason: str, interrupt: bool) -> None:
        with self._lock:
            if self.kind is None:
                self.kind, self.reason = kind, reason
        if interrupt:
            self.event.set()


class Heartbeat(threading.Thread):
    """Beats every `interval` seconds on its own backend connection until stopped."""

    def __init__(
        self, backend: Backend, run_id: str, worker: str, interval: float, stop: StopRequest
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.backend, self.run_id, self.worker = backend, run_id, worker
        self.interval, self.stop_request = interval, stop
        self.done = threading.Event()

    def run(self) -> None:
        # The first beat goes out at once: the lease has been running since the claim.
        while True:
            try:
                control = self.backend.heartbeat(self.run_id, self.worker)
            except Exception as exc:  # a busy store must not kill the run; the lease has slack
                log.warning("heartbeat failed: %s", error_line(exc))
                control = Control.proceed
            if control != Control.proceed:
                self.stop_request.request(control, _control_reason(control), interrupt=True)
            if self.done.wait(self.interval):
                return

    def close(self) -> None:
        self.done.set()
        self.join(timeout=self.interval + 5)
        self.backend.close()


def _control_reason(control: Control, detail: str = "") -> str:
    return {
        Control.stop: f"early terminated{detail}",
        Control.pause: "sweep paused",
        Control.cancel: "sweep canceled",
        Control.lost: "run was reaped by another process",
    }.get(control, control.value)


class Worker:
    """Everything one worker process holds across its runs: the trainer, its backend, its
    wandb logger. What a single run holds lives in `run` and is dropped when it returns."""

    def __init__(
        self,
        home: Home,
        backend: str,
        trainer: str,
        worker: str,
        heartbeat_s: float,
        memory_probe: str = "agent.memory:measure",
    ) -> None:
        from sweeper.wandb.runlog import BackgroundWandbLogger

        self.home, self.backend_name = home, backend
        self.trainer_ref, self.name, self.heartbeat_s = trainer, worker, heartbeat_s
        self.memory_probe = memory_probe
        self.stop = StopRequest()
        #: SIGTERM came: the current run stops and no other run starts in this process.
        self.terminating = False
        #: The process is on its way out, waiting for the wandb helper (see `close`).
        self.closing = False
        # The wandb backend logs each run to W&B itself (the sweep's run, same id); a
        # mirror would add a second copy of every run to the project.
        self.wandb = BackgroundWandbLogger(
            home.wandb_dir, mode="disabled" if backend == "wandb" else None
        )
        self.train: TrainFn | None = None
        #: The sweep runs the user's script: no trainer is loaded.
        self.program = False
        self.measure: Callable[[], MemoryReading] | None = None
        self.backend: Backend | None = None

    @property
    def reusable(self) -> bool:
        return self.program or (self.train is not None and is_reusable(self.train))

    def warm_up(self, sweep_id: str | None = None) -> None:
        """Import what every run of `sweep_id` needs, so a run starts at model construction.

        A program sweep's runs are the user's script in its own process: its worker loads
        no trainer (and so no torch) and mirrors nothing to wandb (the script logs).
        """
        self.measure = load_trainer(self.memory_probe, "--memory-probe")
        self.backend = open_backend(self.backend_name, self.home)
        self.program = sweep_id is not None and self.backend.get_sweep(sweep_id).kind == "program"
        if not self.program:
            # Started first: the helper imports wandb on another core while we import torch.
            self.wandb.prepare()
            # Resolving the function imports its module: trainer.loop, and torch with it.
            self.train = load_trainer(self.trainer_ref)
            import trainer.config  # noqa: F401  (a custom --trainer still gets TrainConfig)
        if os.environ.get("CUDA_VISIBLE_DEVICES") and "torch" in sys.modules:
            _warm_cuda()
        gc.freeze()  # the imports live as long as the process: keep them out of collections

    def close(self) -> None:
        """Before the process exits: wait for the wandb helper to write the runs it was sent.

        The supervisor's SIGTERM at its shutdown may come meanwhile; the wait goes on.
        """
        self.closing = True
        self.wandb.close()

    def run(self, run_id: str) -> str:
        """Train `run_id` and report its end to the backend; return the state it ended in."""
        self.stop = StopRequest()
        if self.terminating:
            self.stop.request(Control.pause, SIGTERM_REASON, interrupt=True)
        heartbeat = Heartbeat(
            open_backend(self.backend_name, self.home),
            run_id,
            self.name,
            self.heartbeat_s,
            self.stop,
        )
        heartbeat.start()
        try:
            state = self._train(run_id)
        finally:
            heartbeat.close()
        log.info("run %s: %s", run_id, state)
        return state

    def _train(self, run_id: str) -> str:
        assert self.backend is not None
        backend = self.backend
        run = backend.get_run(run_id)
        sweep = backend.get_sweep(run.sweep_id)
        log.info("run %s: config %s", run_id, json.dumps(run.config, sort_keys=True, default=str))
        if sweep.kind == "program":
            return self._run_program(run, sweep)
        from pydantic import ValidationError

        from trainer.config import TrainConfig
        from trainer.errors import Interrupted

        assert self.train is not None  # loaded by warm_up for a sweep of the trainer
        overrides = {
            "checkpoint_dir": str(self.home.checkpoint_dir(run.sweep_id, run_id)),
            "cache_dir": str(self.home.cache_dir),
        }
        try:
            config = TrainConfig(**{**run.config, **overrides})
        except ValidationError as exc:
            backend.fail_run(run_id, self.name, f"invalid config: {error_line(exc)}")
            return RunState.failed.value
        rule = (sweep.spec.get("early_terminate") or {}).get("type", "early_terminate")

        def on_epoch(metrics: Any) -> bool:
            values = metrics.model_dump(mode="json")
            control = backend.log_epoch(run_id, self.name, values)
            self.wandb.log(values)
            if control != Control.proceed:
                detail = (
                    f" by {rule} at epoch {values.get('epoch')}" if control == Control.stop else ""
                )
                self.stop.request(control, _control_reason(control, detail), interrupt=False)
            return self.stop.kind is not None

        self.wandb.start(run.sweep_id, run_id, run.config)
        state, summary = RunState.failed.value, None
        try:
            if self.stop.event.is_set():
                raise Interrupted("stop requested before training began")
            result = self.train(config, on_epoch=on_epoch, stop_event=self.stop.event)
            summary = result.model_dump(mode="json", exclude={"history"})
            state = self._end(run_id, summary)
        except Interrupted:
            state = self._end(run_id, summary)
        except Exception as exc:  # TrainerError or a trainer bug: the run fails, the agent goes on
            log.error("run %s failed:\n%s", run_id, traceback.format_exc())
            if self.stop.kind == Control.lost:
                state = "lost"
            else:
                backend.fail_run(run_id, self.name, error_line(exc))
        finally:
            self.wandb.finish(summary, state)
        return state

    def _run_program(self, run: Run, sweep: Sweep) -> str:
        """Run the user's script for `run` (agent.program) and report how it ended.

        While it runs, what it logs with wandb is read from its `.wandb` file: each history
        row goes to `log_epoch` (hyperband, the live table). A stop request (hyperband,
        pause, cancel, SIGTERM, a lost lease) stops its process group as `wandb agent`
        does. Exit 0: finished with W&B's summary; another code: failed with the tail of
        its output; killed by a signal nobody here sent: crashed, and re-queued.
        """
        from agent.program import MetricsFeed, ProgramProcess, describe_exit, log_tail, nest_config

        assert self.backend is not None
        backend, run_id = self.backend, run.id
        args = nest_config(sweep.spec.get("parameters") or {}, run.config)
        if self.stop.event.is_set():
            return self._end(run_id, None)
        feed = MetricsFeed(backend, run_id, self.name, self.home.wandb_dir, sweep.spec)
        program = ProgramProcess(
            sweep.spec,
            sweep.id,
            run_id,
            args,
            self.home.wandb_dir,
            backend_env=backend.program_env(run_id),
        )
        log.info("run %s: %s", run_id, " ".join(program.command))
        while True:
            code = program.wait(PROGRAM_POLL_S)
            if self.stop.kind != Control.lost and (answer := feed.poll()) is not None:
                control, detail = answer
                self.stop.request(control, _control_reason(control, detail), interrupt=True)
            if code is not None:
                break
            if self.stop.event.is_set():
                program.stop()
        summary = feed.summary()
        if self.stop.kind is not None:
            return self._end(run_id, summary)
        if code == 0:
            backend.finish_run(run_id, self.name, summary)
            return RunState.finished.value
        if code < 0:
            backend.fail_run(run_id, self.name, f"program {describe_exit(code)}", crashed=True)
            return RunState.crashed.value
        tail = log_tail(self.home.log_path(sweep.id, run_id))
        backend.fail_run(run_id, self.name, f"program {describe_exit(code)}: {tail}")
        return RunState.failed.value

    def _end(self, run_id: str, summary: dict[str, Any] | None) -> str:
        """Report the end of a run that returned or was interrupted, by why it stopped."""
        assert self.backend is not None
        kind, reason = self.stop.kind, self.stop.reason or ""
        if kind is None:
            if summary is None:  # interrupted without a recorded reason: treat as a signal
                self.backend.requeue_run(run_id, self.name, "interrupted")
                return RunState.pending.value
            self.backend.finish_run(run_id, self.name, summary)
            return RunState.finished.value
        if kind == Control.stop:
            # The backend may have recorded the precise rule ("below the 0.6 cut at epoch 2").
            reason = self.backend.get_run(run_id).reason or reason
        if kind in (Control.stop, Control.cancel):
            self.backend.finish_run(
                run_id, self.name, summary or {}, state=RunState.stopped, reason=reason
            )
            return RunState.stopped.value
        if kind == Control.lost:
            return "lost"
        # pause, or a signal (recorded as pause-like with its own reason): train it again later
        self.backend.requeue_run(run_id, self.name, reason)
        return RunState.pending.value

    def on_sigterm(self) -> None:
        """SIGTERM: stop at the next batch boundary; the run goes back to the queue."""
        self.terminating = True
        self.stop.request(Control.pause, SIGTERM_REASON, interrupt=True)

    def clean_up(self) -> MemoryReading:
        """Free what the last run left and read the memory the process still holds."""
        assert self.measure is not None
        free_run_memory()
        reading = self.measure()
        log.info("memory after the run: %s", reading.text())
        return reading


SIGTERM_REASON = "agent stopped (SIGTERM)"


def _warm_cuda() -> None:
    """Create this worker's CUDA context now (about a second) rather than at its first batch.

    Only for trainers that import torch anyway; a failure is left for the run to report.
    """
    try:
        import torch

        if torch.cuda.is_available():
            torch.empty(1, device="cuda")
    except Exception as exc:
        log.warning("could not initialise CUDA ahead of the run: %s", error_line(exc))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when the supervisor dies (kill -9 of the agent)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(EXIT_OK)


def _send(status: IO[str], **message: Any) -> None:
    status.write(json.dumps(message) + "\n")
    status.flush()


def _redirect_output(path: os.PathLike[str]) -> None:
    """Point fds 1 and 2 (Python's, the trainer's and native libraries') at the run's log."""
    private_dir(os.path.dirname(path))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    _point_output_at(fd)
    os.close(fd)


def _point_output_at(fd: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent.worker", description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--trainer", default="trainer:train")
    parser.add_argument("--worker", required=True, help="the name runs are claimed under")
    parser.add_argument("--heartbeat-s", type=float, default=10.0)
    parser.add_argument("--memory-probe", default="agent.memory:measure")
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Warm up, say ready, then train each run id read from stdin until end of file."""
    args = _parse_args(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {args.worker} %(levelname)s %(message)s",
    )
    status = os.fdopen(args.status_fd, "w", buffering=1)
    home = Home(args.home)
    worker = Worker(
        home, args.backend, args.trainer, args.worker, args.heartbeat_s, args.memory_probe
    )
    training = threading.Event()

    def on_sigterm(signum: int, frame: Any) -> None:
        if worker.closing:  # already leaving: let the wandb helper finish first
            return
        if not training.is_set():  # no run (a spare, or between runs): just go
            worker.close()
            _exit_now(EXIT_OK)
        worker.on_sigterm()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        worker.warm_up(args.sweep)
    except Exception as exc:
        log.error("worker cannot start:\n%s", traceback.format_exc())
        _send(
            status,
            event="error",
            message=str(exc) if isinstance(exc, ValueError) else error_line(exc),
        )
        worker.close()
        return EXIT_START_FAILED
    agent_log = os.dup(1)  # between runs, output goes back to the agent log
    _send(status, event="ready", reusable=worker.reusable)
    while not worker.terminating:
        line = sys.stdin.readline()
        if not line.strip():
            break
        run_id = json.loads(line)["run_id"]
        training.set()
        _redirect_output(home.log_path(args.sweep, run_id))
        state = worker.run(run_id)
        memory = worker.clean_up()
        _point_output_at(agent_log)
        training.clear()
        _send(status, event="done", run_id=run_id, state=state, memory=memory.model_dump())
    worker.close()
    _exit_now(EXIT_OK)


def _exit_now(code: int) -> NoReturn:
    """Exit without interpreter teardown: the run is reported and wandb's helper is done, and
    tearing down torch, CUDA and wandb's service can take seconds that the slot's next
    run would otherwise wait for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
