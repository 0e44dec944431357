"""A user's project folder with the test scripts, and `sweeper` run on it as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.locate import open_backend
from sweeper.models import Run
from sweeper.paths import Home
from tests.conftest import LEFT_OUT, isolated_environ

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("logs_metric.py", "reads_args.py")

#: A user's scripts run under the agent; importing them (pytest's doctest collection) would
#: start a wandb run in the test process.
collect_ignore = [*SCRIPTS, "wandb_examples"]


class Project:
    """A folder holding a user's scripts and sweep files; `sweeper` runs in it, in an
    environment of its own (a module's shared runs start outside any test's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.home = path / ".sweeper"
        self.out = path / "out.jsonl"
        inherited = {k: v for k, v in os.environ.items() if k not in LEFT_OUT}
        self.env = {**inherited, **isolated_environ(path), "PYTHONPATH": str(ROOT)}
        self.env["WANDB_MODE"] = "disabled"
        self.env["PROGRAM_OUT"] = str(self.out)
        self.env["SWEEPER_HOME"] = str(self.home)

    @classmethod
    def with_scripts(cls, path: Path) -> Project:
        """A project in `path` holding the test scripts (logs_metric.py, reads_args.py)."""
        for script in SCRIPTS:
            shutil.copy(Path(__file__).parent / script, path / script)
        return cls(path)

    def sweeper(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.python("-m", "sweeper", *args, check=check)

    def python(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Python in the folder, with its environment, as the user runs it."""
        completed = subprocess.run(
            [sys.executable, *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert completed.returncode == 0, completed.stdout + completed.stderr
        return completed

    def create(self, spec: str) -> str:
        (self.path / "sweep.yaml").write_text(spec)
        created = self.sweeper("create", "sweep.yaml", "--backend", "local", "--json")
        return str(json.loads(created.stdout)["id"])

    def agent(self, sweep_id: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "sweeper", "agent", sweep_id, "--gpus", "none", *args],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run_agent(self, sweep_id: str, *args: str) -> str:
        proc = self.agent(sweep_id, *args)
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output
        return output

    def swept(self, spec: str, *agent_args: str) -> AgentRun:
        """`spec` created as sweep.yaml, and one agent run on it to its end."""
        sweep_id = self.create(spec)
        return AgentRun(self, sweep_id, self.run_agent(sweep_id, *agent_args))

    def runs(self, sweep_id: str) -> list[Run]:
        backend = open_backend("local", Home(self.home))
        try:
            return backend.list_runs(sweep_id)
        finally:
            backend.close()

    def received(self) -> list[dict[str, Any]]:
        """What the scripts wrote to PROGRAM_OUT, one object per run."""
        return [json.loads(line) for line in self.out.read_text().splitlines()]


@dataclass(frozen=True)
class AgentRun:
    """A sweep of a project and what its agent printed: what a shared run's tests read."""

    project: Project
    sweep_id: str
    output: str
