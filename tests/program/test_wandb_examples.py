"""Sweep files from W&B's public examples (github.com/wandb/examples), unchanged, run offline:
`sweeper create` + `sweeper agent --count 2 --gpus none` in a copy of their folder, where a
small stand-in replaces each training script and logs the same metric. The eight agents run
together in the background (tests/shared_runs.py); each test reads its example's runs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sweeper.models import RunState
from tests.program.conftest import AgentRun, Project

EXAMPLES = Path(__file__).parent / "wandb_examples"
SPECS = sorted(path.relative_to(EXAMPLES).as_posix() for path in EXAMPLES.glob("*/*.yaml"))


def _example(spec_file: str) -> Callable[[Path], AgentRun]:
    def run(folder: Path) -> AgentRun:
        shutil.copytree((EXAMPLES / spec_file).parent, folder, dirs_exist_ok=True)
        project = Project(folder)
        created = project.sweeper("create", Path(spec_file).name, "--backend", "local", "--json")
        sweep_id = str(json.loads(created.stdout)["id"])
        return AgentRun(project, sweep_id, project.run_agent(sweep_id, "--count", "2"))

    return run


#: One agent run per example, all started together (tests/shared_runs.py).
SHARED_RUNS = {spec_file: _example(spec_file) for spec_file in SPECS}


def test_the_examples_are_found() -> None:
    assert len(SPECS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec_file", [pytest.param(s, marks=pytest.mark.shared_run(s), id=s) for s in SPECS]
)
def test_a_wandb_example_sweep_runs_unchanged_offline(spec_file: str, shared_run: AgentRun) -> None:
    runs = shared_run.project.runs(shared_run.sweep_id)
    # sweep-bool.yaml has no metric (W&B's grid and random search need none).
    spec = yaml.safe_load((EXAMPLES / spec_file).read_text())
    metric = (spec.get("metric") or {}).get("name")
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
