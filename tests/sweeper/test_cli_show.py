"""`sweeper ls` and `sweeper status` (sweeper/cli/show.py), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sweeper.cli_testkit import GRID, invoke


def test_ls_json_counts_runs_by_state(spec_file: Path) -> None:
    invoke("create", str(spec_file))
    listed = json.loads(invoke("ls", "--json")[1])
    assert len(listed) == 1
    assert set(listed[0]) == {"id", "name", "backend", "state", "runs"}
    assert isinstance(listed[0]["runs"], dict)


def test_ls_table_marks_the_current_sweep(spec_file: Path) -> None:
    invoke("create", str(spec_file), "--name", "a")
    code, stdout, _ = invoke("ls")
    assert code == 0
    assert "tiny-grid" not in stdout and " a " in stdout and "*" in stdout


def test_status_lists_runs_with_their_keys(spec_file: Path) -> None:
    from sweeper.locate import open_backend
    from sweeper.paths import Home

    sweep_id = json.loads(invoke("create", str(spec_file), "--json")[1])["id"]
    backend = open_backend("local", Home())
    claim = backend.claim_run(sweep_id, "w1")
    assert claim.run is not None
    backend.log_epoch(claim.run.id, "w1", {"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0})
    status = json.loads(invoke("status", sweep_id, "--json")[1])
    assert status["id"] == sweep_id
    (run,) = status["runs"]
    assert {"id", "state", "config", "metric", "epochs", "started_at", "ended_at"} <= set(run)
    assert run["state"] == "running" and run["metric"] == 0.5 and run["epochs"] == 1
    code, stdout, _ = invoke("status")
    assert code == 0 and claim.run.id in stdout


def test_a_grid_sweep_without_a_metric_validates_and_shows_its_runs(tmp_path: Path) -> None:
    from sweeper.locate import open_backend
    from sweeper.paths import Home

    path = tmp_path / "no-metric.yaml"
    path.write_text(GRID.replace("metric: {name: val_accuracy, goal: maximize}\n", ""))
    code, stdout, _ = invoke("validate", str(path))
    assert code == 0 and "trainer grid sweep without a metric" in stdout, stdout
    sweep_id = json.loads(invoke("create", str(path), "--json")[1])["id"]
    claim = open_backend("local", Home()).claim_run(sweep_id, "w1")
    assert claim.run is not None
    code, stdout, _ = invoke("status")
    assert code == 0 and "grid without a metric, running" in stdout and claim.run.id in stdout
