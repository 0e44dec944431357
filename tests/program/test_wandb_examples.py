"""Sweep files from W&B's public examples (github.com/wandb/examples), unchanged, run offline:
`sweeper create` + `sweeper agent --count 2 --gpus none` in a copy of their folder, where a
small stand-in replaces each training script and logs the same metric."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sweeper.models import RunState
from tests.program.conftest import Project

EXAMPLES = Path(__file__).parent / "wandb_examples"
SPECS = sorted(path.relative_to(EXAMPLES).as_posix() for path in EXAMPLES.glob("*/*.yaml"))


def test_the_examples_are_found() -> None:
    assert len(SPECS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("spec_file", SPECS)
def test_a_wandb_example_sweep_runs_unchanged_offline(tmp_path: Path, spec_file: str) -> None:
    folder = EXAMPLES / spec_file
    shutil.copytree(folder.parent, tmp_path, dirs_exist_ok=True)
    project = Project(tmp_path)
    created = project.sweeper("create", folder.name, "--backend", "local", "--json")
    sweep_id = str(json.loads(created.stdout)["id"])
    project.run_agent(sweep_id, "--count", "2")
    runs = project.runs(sweep_id)
    # sweep-bool.yaml has no metric (W&B's grid and random search need none).
    metric = (yaml.safe_load(folder.read_text()).get("metric") or {}).get("name")
    assert len(runs) == 2
    for run in runs:
        # A hyperband sweep may stop the second run when it falls behind the first.
        assert run.state == RunState.finished or (
            run.state == RunState.stopped and "hyperband" in (run.reason or "")
        ), run.reason
        assert run.epochs >= 1
        if metric is None:
            assert run.metric is None and run.summary
        else:
            assert isinstance(run.summary[metric], float) and run.metric is not None
