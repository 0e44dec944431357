"""The supervisor's handle on one worker process: start it, see it get ready, hand it runs.

The worker's side of the protocol is in `agent.worker`. A handle starts the process with
`sys.executable -m agent.worker`, its GPU in CUDA_VISIBLE_DEVICES, its output appended to
the agent log (the worker moves it to each run's log while that run trains), and a pipe
on which the worker says when it is ready and when each run is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import agent
from agent.memory import MemoryReading
from agent.recycle import WorkerFacts
from agent.slots import Slot

#: Where `agent` (and the default trainer) can be imported from, for workers started
#: from a checkout that is not installed.
_PROJECT_ROOT = str(Path(agent.__file__).resolve().parents[1])


def worker_env(slot: Slot, base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the agent's, with its GPU, unbuffered output, the project
    importable, and none of the agent's wandb-core (the worker's wandb mirror starts its own:
    a connection to a service it does not own prints a wandb thread's traceback at exit)."""
    env = dict(os.environ if base is None else base)
    env.pop("WANDB_SERVICE", None)
    env["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible_devices
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _PROJECT_ROOT not in paths:
        paths.append(_PROJECT_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class WorkerProcess:
    """One `python -m agent.worker` process of a slot.

    Lifecycle: started -> ready (warm spare) -> assigned a run -> done (idle, warm) ->
    assigned the next run ... -> released -> exited. `poll()` reads what the worker said
    and whether it has exited; it never blocks.
    """

    def __init__(self, slot: Slot, name: str, args: list[str], log_file: IO[bytes]) -> None:
        self.slot, self.name = slot, name
        self.ready = False
        self.error: str | None = None
        self.run_id: str | None = None
        self.assigned_at: float | None = None
        self.killed_by_supervisor = False
        self.released = False
        self.facts = WorkerFacts(reusable=False)
        #: (run id, state) of the runs the worker said are done, not yet taken by `take_done`.
        self._done: list[tuple[str, str]] = []
        self.started_at = time.monotonic()
        read_fd, write_fd = os.pipe()
        try:
            command = [sys.executable, "-m", "agent.worker", *args, "--worker", name]
            command += ["--status-fd", str(write_fd), "--parent", str(os.getpid())]
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=worker_env(slot),
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._status = os.fdopen(read_fd, "rb", buffering=0)
        self._pending = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fileno(self) -> int:
        """The status pipe, for `select`: readable when the worker said something or exited."""
        return self._status.fileno()

    @property
    def listening(self) -> bool:
        """Whether the status pipe is still open (`close` has not been called)."""
        return not self._status.closed

    def poll(self) -> int | None:
        """Read the worker's status messages; return its exit code once it has exited."""
        self._read_status()
        code = self.proc.poll()
        if code is not None:
            self._read_status()
        return code

    def _read_status(self) -> None:
        while True:
            try:
                chunk = self._status.read(4096)
            except (BlockingIOError, ValueError):
                return
            if not chunk:
                return
            self._pending += chunk
            *lines, self._pending = self._pending.split(b"\n")
            for line in lines:
                self._handle(json.loads(line))

    def _handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "ready":
            self.ready = True
            self.facts.reusable = bool(message.get("reusable"))
        elif event == "error":
            self.error = str(message.get("message"))
        elif event == "done":
            run_id, state = str(message["run_id"]), str(message["state"])
            memory = MemoryReading.model_validate(message["memory"])
            self.facts.last_run, self.facts.last_state, self.facts.memory = run_id, state, memory
            if self.facts.baseline is None:
                self.facts.baseline = memory
            self._done.append((run_id, state))
            if self.run_id == run_id:
                self.run_id = None

    @property
    def idle(self) -> bool:
        """Ready for a run: warmed up, not training one, not told to go."""
        return self.ready and self.run_id is None and not self.released

    def take_done(self) -> list[tuple[str, str]]:
        """(run id, state) of the runs the worker finished since the last call."""
        done, self._done = self._done, []
        return done

    def assign(self, run_id: str, device: str | None = None) -> None:
        """Hand the worker the run it must train (claimed under its name) on `device`."""
        assert self.proc.stdin is not None
        self.run_id, self.assigned_at = run_id, time.monotonic()
        self.facts.runs += 1
        self.facts.device = device
        self.proc.stdin.write((json.dumps({"run_id": run_id}) + "\n").encode())
        self.proc.stdin.flush()

    def release(self) -> None:
        """Tell the worker to exit once it has no run (end of file on its stdin)."""
        self.released = True
        self._close_stdin()

    def _close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def terminate(self) -> None:
        """SIGTERM: a worker with a run stops it at the next batch and re-queues it."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL at once; the supervisor then owns cleaning up the run."""
        if self.proc.poll() is None:
            self.killed_by_supervisor = True
            self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit; None if it is still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Release the pipes (after the process has exited)."""
        self._close_stdin()
        self._status.close()

    def exit_description(self) -> str:
        """'worker killed by SIGKILL' or 'worker exited with code 1', from the exit code."""
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                return f"worker killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"worker killed by signal {-code}"
        return f"worker exited with code {code} without reporting the run's end"
