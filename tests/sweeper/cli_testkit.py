"""Helpers for the CLI's tests: a small grid spec, the CLI in-process (typer's CliRunner) and
as a user's process. Fixtures (`spec_file`, `bad_spec`) are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sweeper.cli import app

REPO = Path(__file__).resolve().parents[2]

GRID = """\
name: tiny-grid
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  data_dir: {value: data/tiny}
  model: {value: resnet18}
  mode: {value: head}
  lr: {values: [0.001, 0.0001]}
  dropout: {values: [0.0, 0.3]}
"""

_runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    """`sweeper ARGS` in this process: exit code, stdout, stderr."""
    result = _runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m sweeper ARGS` (or `python -c CODE ARGS`) as a user runs it: a fresh process
    whose output is a pipe, this worktree first on the path, no COLUMNS."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = ["-c", code, *args] if code else ["-m", "sweeper", *args]
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env)
