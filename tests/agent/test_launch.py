"""`sweeper launch`: agent jobs through submitit's local executor (the SLURM path differs
only in submitit's executor), claiming from one PostgreSQL store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agent.launch import AgentJob

SPEC = {
    "method": "grid",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "parameters": {
        "data_dir": {"value": "data"},
        "epochs": {"value": 1},
        "lr": {"values": [0.001, 0.0001]},
        "dropout": {"values": [0.0, 0.1, 0.2]},
    },
}


def sweeper(*args: str, store: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m sweeper ARGS` as a user runs it, on `store` when given."""
    env = dict(os.environ)
    if store is not None:
        env["SWEEPER_STORE"] = store
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.mark.slow
def test_local_jobs_drain_a_postgres_sweep_and_status_names_the_host(
    agent_env: Path, pg_url: str, spec_file: Path
) -> None:
    created = sweeper("--store", pg_url, "create", str(spec_file), "--backend", "local", "--json")
    assert created.returncode == 0, created.stderr
    sweep_id = json.loads(created.stdout)["id"]
    launched = sweeper(
        "--store", pg_url, "launch", "--local", "--nodes", "2",
        "--trainer", "tests.agent.fake_trainer:train", "--wait", "--json",
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    result = json.loads(launched.stdout)
    assert result["sweep"] == sweep_id and len(result["jobs"]) == 2
    folder = Path(result["folder"])
    assert folder.is_dir() and any(folder.glob("*_log.out"))

    status = sweeper("status", "--json", store=pg_url)
    assert status.returncode == 0, status.stderr
    runs = json.loads(status.stdout)["runs"]
    assert Counter(r["state"] for r in runs) == Counter({"finished": 6})
    assert {r["host"] for r in runs} == {socket.gethostname()}
    trained = [p.name.split(".")[0] for p in agent_env.iterdir()]
    assert sorted(trained) == sorted(r["id"] for r in runs)  # each run trained once
    table = sweeper("status", store=pg_url)
    assert "host" in table.stdout and socket.gethostname()[:10] in table.stdout
    assert "password" not in table.stdout


def test_slurm_on_the_host_local_sqlite_store_is_refused(spec_file: Path) -> None:
    assert sweeper("create", str(spec_file), "--backend", "local").returncode == 0
    result = sweeper("launch", "--slurm", "--nodes", "2", "--gpus-per-node", "4")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "postgresql://" in result.stderr and "--local" in result.stderr


def test_launch_needs_slurm_or_local(spec_file: Path) -> None:
    assert sweeper("create", str(spec_file), "--backend", "local").returncode == 0
    result = sweeper("launch")
    assert result.returncode != 0 and "--slurm or --local" in result.stderr


def test_a_job_runs_sweeper_agent_on_its_gpus_with_the_store(tmp_path: Path) -> None:
    job = AgentJob("abc12345", str(tmp_path), "postgresql://db/s", "none", ("--count", "1"))
    assert job.command()[1:] == [
        "-m", "sweeper", "--home", str(tmp_path), "agent", "abc12345",
        "--gpus", "none", "--count", "1",
    ]  # fmt: skip
