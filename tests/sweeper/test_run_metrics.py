"""Reading a run's history and W&B summary from the `.wandb` file a real offline wandb run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.wandb.run_metrics import RunMetrics

SCRIPT = """
import wandb
run = wandb.init(id="abcd1234", config={"lr": 0.1})
for step in range(3):
    run.log({"loss": 1.0 / (step + 1), "acc": step / 10})
run.summary["acc"] = 0.99
run.finish()
"""


@pytest.fixture(scope="module")
def wandb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, capture_output=True)
    (found,) = folder.glob("wandb/offline-run-*-abcd1234/run-abcd1234.wandb")
    return found


def test_history_rows_and_the_summary_with_wandbs_meaning(wandb_file: Path) -> None:
    metrics = RunMetrics(wandb_file)
    assert metrics.read() == [
        {"loss": 1.0, "acc": 0.0, "_step": 0},
        {"loss": 0.5, "acc": 0.1, "_step": 1},
        {"loss": 1.0 / 3, "acc": 0.2, "_step": 2},
    ]
    # loss: its last logged value; acc: what the script set in the summary.
    assert metrics.summary() == {"loss": 1.0 / 3, "acc": 0.99}
    assert metrics.read() == []


@pytest.mark.parametrize("kept", [0.3, 0.5, 0.7, 0.9])
def test_a_torn_tail_gives_the_rows_before_it_then_the_rest(
    wandb_file: Path, tmp_path: Path, kept: float
) -> None:
    data = wandb_file.read_bytes()
    complete = RunMetrics(wandb_file).read()
    growing = tmp_path / "run.wandb"
    growing.write_bytes(data[: int(len(data) * kept)])
    metrics = RunMetrics(growing)
    before = metrics.read()
    assert before == complete[: len(before)]
    growing.write_bytes(data)
    assert before + metrics.read() == complete
