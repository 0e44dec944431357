"""An offline wandb run as a program sweep's script writes it: tests/program/logs_metric.py
started by the agent's own `ProgramProcess` (WANDB_SWEEP_ID, WANDB_RUN_ID, the parameter
file), under the home's wandb folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.program import ProgramProcess, find_wandb_file
from sweeper.paths import Home

SCRIPT = Path(__file__).resolve().parents[1] / "program" / "logs_metric.py"


def write_program_run(home: Home, sweep_id: str, run_id: str, cwd: Path) -> Path:
    """Run the script to its end for `run_id` of `sweep_id`; return its `.wandb` file."""
    shutil.copy(SCRIPT, cwd / SCRIPT.name)
    spec = {"program": SCRIPT.name, "parameters": {"lr": {"values": [0.5]}}}
    program = ProgramProcess(spec, sweep_id, run_id, {"lr": 0.5}, home.wandb_dir, cwd=cwd)
    assert program.wait(120) == 0
    found = find_wandb_file(home.wandb_dir, run_id)
    assert found is not None
    return found
