"""A program run: the user's own script, started and stopped the way `wandb agent` does.

`wandb agent` (wandb/wandb_agent.py, `Agent._command_run`) builds the command with
wandb's helpers `create_sweep_command` (`${envvar:NAME}`) and `create_sweep_command_args`
(every `${args...}` form), writes the run's parameters to `WANDB_SWEEP_PARAM_PATH` (the
YAML that a bare `wandb.init()` reads into `wandb.config`), and for `${args_json_file}`
a JSON file beside it. This module does the same with the same helpers, with two
differences a local agent needs: `${interpreter}` is this environment's Python
(`sys.executable`, where wandb writes `python`), and the script runs in its own process
group, offline, its wandb files under the sweep's home so `sweeper sync` finds them.

Stopping is wandb's: SIGTERM to the group, SIGKILL after `KILL_DELAY_S`. On Linux the
script also dies with its worker (a `kill -9` of the agent), as the worker dies with its
supervisor: a two-line launcher asks the kernel for SIGKILL at the worker's death, then
execs the command in its place (same process, no extra one left running).

What the script logs reaches the backend through `MetricsFeed`, which the in-process
function agent (`agent.function`, `sweeper.agent(sweep_id, function=f)`) shares, with
`sweep_environment` and `nest_config`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.models import Control

if TYPE_CHECKING:
    from sweeper.backends.base import Backend
    from sweeper.wandb.run_metrics import RunMetrics

#: W&B agent's grace between SIGTERM and SIGKILL (`Agent.KILL_DELAY`).
KILL_DELAY_S = 30.0
#: Run as `python -S -c _LAUNCHER WORKER_PID COMMAND...`: PR_SET_PDEATHSIG (1) survives exec.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(137)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def nest_config(parameters: Mapping[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """The run's values in the spec's shape: a nested group's leaves under its name.

    `Run.config` is flat (a setting's name appears once in a spec), W&B hands a program
    the nested form.

    >>> nest_config({"lr": {"values": [1]}, "opt": {"parameters": {"m": {"value": 0.9}}}},
    ...             {"lr": 1, "m": 0.9})
    {'lr': 1, 'opt': {'m': 0.9}}
    """
    nested: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if isinstance(parameter, Mapping) and "parameters" in parameter:
            nested[name] = nest_config(parameter["parameters"], flat)
        elif name in flat:
            nested[name] = flat[name]
    return nested


def sweep_files(wandb_dir: Path, sweep_id: str, run_id: str) -> tuple[Path, Path]:
    """Where `wandb agent` puts a run's parameter YAML and `${args_json_file}` JSON."""
    folder = wandb_dir / "wandb" / f"sweep-{sweep_id}"
    return folder / f"config-{run_id}.yaml", folder / f"config-{run_id}.json"


def sweep_environment(
    wandb_dir: Path, sweep_id: str, run_id: str, args: dict[str, Any]
) -> dict[str, str]:
    """Write the run's parameter YAML where `wandb agent` puts it; return the variables it sets.

    With them in the environment, a bare `wandb.init()` joins the sweep's run `run_id`
    with `args` as its `wandb.config`, offline, its files under `wandb_dir`.
    """
    from wandb.sdk.lib import config_util

    param_path, _ = sweep_files(wandb_dir, sweep_id, run_id)
    param_path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = {name: {"value": value} for name, value in args.items()}
    config_util.save_config_file_from_dict(str(param_path), wrapped)
    return {
        "WANDB_SWEEP_ID": sweep_id,
        "WANDB_RUN_ID": run_id,
        "WANDB_SWEEP_PARAM_PATH": str(param_path),
        "WANDB_DIR": str(wandb_dir),
        "WANDB_MODE": "offline",
    }


def wandb_files(wandb_dir: Path, run_id: str) -> list[Path]:
    """Every `.wandb` transaction log of run `run_id` under `wandb_dir` (a resumed run has one
    per attempt)."""
    return list((wandb_dir / "wandb").glob(f"*-{run_id}/run-{run_id}.wandb"))


def find_wandb_file(
    wandb_dir: Path, run_id: str, earlier: frozenset[Path] = frozenset()
) -> Path | None:
    """This attempt's `.wandb` transaction log of the run, once wandb has created it: one not
    in `earlier` (the logs of the run's earlier attempts).

    >>> find_wandb_file(Path("/nonexistent"), "r1") is None
    True
    """
    for found in wandb_files(wandb_dir, run_id):
        if found not in earlier:
            return found
    return None


def build_command(
    spec: Mapping[str, Any], args: dict[str, Any], json_file: Path
) -> tuple[list[str], dict[str, Any]]:
    """The command line of a run as `wandb agent` builds it, and wandb's argument forms.

    `args` are the run's values by top-level name ({"lr": 0.1, "opt": {"m": 0.9}}).
    """
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = [str(c) for c in (spec.get("command") or sweep_utils.DEFAULT_SWEEP_COMMAND)]
    sweep_command = sweep_utils.create_sweep_command(command)
    sweep_vars: dict[str, Any] = sweep_utils.create_sweep_command_args(
        {"args": {name: {"value": value} for name, value in args.items()}}
    )
    sweep_vars["interpreter"] = [sys.executable]
    sweep_vars["program"] = [str(spec["program"])] if "program" in spec else []
    sweep_vars["args_json_file"] = [str(json_file)]
    if platform.system() != "Windows":
        sweep_vars["env"] = ["/usr/bin/env"]
    command_list: list[str] = []
    for chunk in sweep_command:
        if chunk.startswith("${") and chunk.endswith("}"):
            command_list += sweep_vars.get(chunk[2:-1]) or []
        else:
            command_list.append(chunk)
    return command_list, sweep_vars


class ProgramProcess:
    """The user's script for one run, in its own process group."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        sweep_id: str,
        run_id: str,
        args: dict[str, Any],
        wandb_dir: Path,
        cwd: Path | None = None,
        backend_env: Mapping[str, str] | None = None,
    ) -> None:
        env = {**os.environ, **sweep_environment(wandb_dir, sweep_id, run_id, args)}
        _, json_path = sweep_files(wandb_dir, sweep_id, run_id)
        self.command, sweep_vars = build_command(spec, args, json_path)
        if "${args_json_file}" in [str(c) for c in spec.get("command") or []]:
            json_path.write_text(sweep_vars["args_json"][0], encoding="utf-8")
        env.update(backend_env or {})  # the W&B backend's: online, the sweep's entity, project
        # The script starts its own wandb-core, as under `wandb agent`: attached to the
        # worker's, its runs would outlive it there ("run ID ... is in use" on a hand-back).
        env.pop("WANDB_SERVICE", None)
        argv = self.command
        if sys.platform.startswith("linux"):
            argv = [sys.executable, "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.terminated_at: float | None = None

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, kill_delay_s: float = KILL_DELAY_S) -> None:
        """SIGTERM the group the first time, SIGKILL once `kill_delay_s` has passed since."""
        now = time.monotonic()
        if self.terminated_at is None:
            self.terminated_at = now
            self._signal(signal.SIGTERM)
        elif now > self.terminated_at + kill_delay_s:
            self._signal(signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the group at once."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class MetricsFeed:
    """What a run logs with wandb, handed to the backend as it comes.

    Each history row of the run's `.wandb` file (read by `sweeper.wandb.run_metrics`) is
    one `log_epoch` (epoch = `_step` + 1): hyperband and the live table see it. The
    summary is W&B's (the last value of each key unless the script set it).

    Create it before the run's script or function starts: a run resumed or re-queued has
    the `.wandb` files of its earlier attempts under the same id, and the feed reads only
    one that was not there when it was created.
    """

    def __init__(
        self, backend: Backend, run_id: str, worker: str, wandb_dir: Path, spec: Mapping[str, Any]
    ) -> None:
        self.backend, self.run_id, self.worker, self.wandb_dir = backend, run_id, worker, wandb_dir
        self.earlier = frozenset(wandb_files(wandb_dir, run_id))
        self.rule = (spec.get("early_terminate") or {}).get("type", "early_terminate")
        self.metrics: RunMetrics | None = None

    def poll(self) -> tuple[Control, str] | None:
        """Report the rows logged since the last call; return the first answer that is not
        `proceed`, with what it is about (" by hyperband at step 2" for a stop, else "")."""
        from sweeper.wandb.run_metrics import RunMetrics

        if self.metrics is None:
            found = find_wandb_file(self.wandb_dir, self.run_id, self.earlier)
            if found is None:
                return None
            self.metrics = RunMetrics(found)
        answer: tuple[Control, str] | None = None
        for row in self.metrics.read():
            control = self.backend.log_epoch(
                self.run_id, self.worker, {"epoch": row["_step"] + 1, **row}
            )
            if control != Control.proceed and answer is None:
                detail = (
                    f" by {self.rule} at step {row['_step']}" if control == Control.stop else ""
                )
                answer = (control, detail)
        return answer

    def summary(self) -> dict[str, Any]:
        """W&B's run summary of what was read so far (empty before wandb wrote anything)."""
        return self.metrics.summary() if self.metrics is not None else {}


def describe_exit(code: int) -> str:
    """'killed by SIGKILL' or 'exited with code 1'.

    >>> describe_exit(-9), describe_exit(2)
    ('killed by SIGKILL', 'exited with code 2')
    """
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def log_tail(path: Path, lines: int = 5, limit: int = 2000) -> str:
    """The last non-empty lines of a log file (the program's stderr and stdout), joined."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # wandb's own banner lines ("wandb: Tracking run ...") would push out the user's error.
    ours = [line for line in text.splitlines() if not line.startswith("wandb: ")]
    kept = [line for line in ours if line.strip()][-lines:]
    return "\n".join(kept)[-limit:]
