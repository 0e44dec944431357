"""Program sweeps for the report tests: a W&B user's own sweep file, its runs written through
the backend the way an agent worker writes a program's runs (no script is run: these tests
are about what the report shows; tests/reports/test_program_report.py runs a real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeper.backends.local import LocalBackend
from sweeper.models import Sweep
from sweeper.spec import parse_spec

#: The worker name the runs are claimed by.
WORKER = "test-worker"


#: A W&B user's sweep file: their own program, metric and parameters, a nested group.
PROGRAM_SPEC = """\
name: user-sweep
program: train.py
method: grid
metric: {name: val_loss, goal: minimize}
parameters:
  epochs: {value: 3}
  seed: {values: [0, 1]}
  optimizer:
    parameters:
      learning_rate: {values: [0.01, 0.1, 1.0]}
      clip: {value: true}
"""
#: What `train.py` would log: val_loss per step, or the error it exits with (lr 1.0 diverges).
DIVERGED = "program exited with code 3: ValueError: loss diverged <b>nan</b> | lr=1.0"


def program_outcome(config: dict[str, Any]) -> list[float] | str:
    """The val_loss a run of PROGRAM_SPEC logs at each step, or why it failed."""
    lr, seed = config["learning_rate"], config["seed"]
    if lr >= 1.0:
        return DIVERGED
    return [round(1.0 / (1 + step * lr * 10) + 0.01 * seed, 4) for step in range(config["epochs"])]


def run_program_sweep(backend: LocalBackend, spec_text: str, folder: Path) -> Sweep:
    """Create the program sweep `spec_text` (its `train.py` written into `folder`) and run it
    the way an agent worker runs a program: each logged row to `log_epoch` (with wandb's
    `_step`), then `finish_run` with W&B's summary, or `fail_run` with the script's error."""
    (folder / "train.py").write_text("import wandb\nwandb.init()\n")
    sweep = backend.create_sweep(parse_spec(spec_text, str(folder / "sweep.yaml"), cwd=folder))
    while (claim := backend.claim_run(sweep.id, WORKER)).run is not None:
        run = claim.run
        outcome = program_outcome(run.config)
        if isinstance(outcome, str):
            backend.fail_run(run.id, WORKER, outcome)
            continue
        for step, loss in enumerate(outcome):
            backend.log_epoch(run.id, WORKER, {"epoch": step + 1, "_step": step, "val_loss": loss})
        backend.finish_run(run.id, WORKER, {"val_loss": outcome[-1]})
    return backend.get_sweep(sweep.id)
