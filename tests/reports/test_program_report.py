"""The user story: a W&B user's own sweep run offline with `sweeper create` and `sweeper agent`,
then `sweeper report` on it, all through the CLI as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reports.programs import PROGRAM_SPEC

ROOT = Path(__file__).resolve().parents[2]


def _sweeper(folder: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEPER_HOME": str(folder / ".sweeper")}
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_sweeper_report_on_a_program_sweep_run_offline(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).parent / "user_train.py", tmp_path / "train.py")
    # Three runs (one seed): learning rates 0.01 and 0.1 finish, 1.0 diverges.
    (tmp_path / "sweep.yaml").write_text(PROGRAM_SPEC.replace("values: [0, 1]", "values: [0]"))
    created = _sweeper(tmp_path, "create", "sweep.yaml", "--backend", "local", "--json")
    _sweeper(tmp_path, "agent", json.loads(created)["id"], "--gpus", "none")
    report = json.loads(_sweeper(tmp_path, "report", "-o", "out", "--json"))
    assert report["kind"] == "program"
    assert report["best"]["config"] == {"epochs": 3, "seed": 0, "learning_rate": 0.1, "clip": True}
    assert report["best"]["metric"] == 0.3333
    assert sorted(r["state"] for r in report["runs"]) == ["failed", "finished", "finished"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    for text, escaped in ((markdown, "\\_"), (html, "_")):
        assert "Part A" not in text and "Test accuracy" not in text
        assert f"learning{escaped}rate" in text and f"val{escaped}loss" in text
        assert f"ValueError: loss diverged at learning{escaped}rate=1.0" in text
    assert (tmp_path / "out" / "report_plots" / "parallel_coordinates.svg").is_file()
