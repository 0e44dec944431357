"""sweeper.api through a user's script in a subprocess: `sweeper.sweep(config)` then
`sweeper.agent(sweep_id, function=train, count=n)`, where `train()` uses only a bare
`wandb.init()` and `wandb.log()`, as under W&B; the runs are read back with `sweeper status --json`.

Each script's run is a shared run (tests/shared_runs.py): they run together in the
background, and each test asserts on what its own run left.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ApiProject
from tests.program.conftest import ROOT

GRID = {
    "method": "grid",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {
        "lr": {"values": [0.5, 2.0, 0.25, 0.125]},
        "model": {"parameters": {"width": {"value": 8}, "bn": {"value": True}}},
    },
}

#: The JSON line a user's script printed last (its sweep id and agent summary), and the
#: sweep's runs as `sweeper status --json` lists them.
ResultAndRuns = tuple[dict[str, Any], list[dict[str, Any]]]

_AGENT_ONLY = """
import sweeper
from function_sweep import train
print(sweeper.agent({sweep_id!r}, function=train).line())
"""


def _count_then_the_rest(folder: Path) -> tuple[Any, ...]:
    """`count=3`, then an agent without a count on the same sweep: what each left."""
    project = ApiProject.with_script(folder)
    first = project.sweep(GRID, count=3)
    runs_after_first = project.status(first["sweep"])["runs"]
    second = project.python("-c", _AGENT_ONLY.format(sweep_id=first["sweep"]))
    return first, runs_after_first, second, project.status(first["sweep"])["runs"], project


def _hyperband(folder: Path) -> ResultAndRuns:
    project = ApiProject.with_script(folder)
    # The lr 0.01 run waits after its first step until it is stopped: only hyperband ends it.
    project.env["HANG_BELOW"] = "0.1"
    spec = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.5, 0.25, 0.01]}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
    }
    result = project.sweep(spec)
    return result, project.status(result["sweep"])["runs"]


def _ctrl_c(folder: Path) -> ResultAndRuns:
    project = ApiProject.with_script(folder)
    project.env["HANG_BELOW"] = "10"  # every run waits after its first step
    script = subprocess.Popen(
        [sys.executable, "function_sweep.py", json.dumps(GRID)],
        cwd=project.path,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (project.out.exists() and project.out.read_text()):
        assert script.poll() is None, script.communicate()
        time.sleep(0.05)
    script.send_signal(signal.SIGINT)
    stdout, stderr = script.communicate(timeout=120)
    assert script.returncode == 0, stdout + stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    return result, project.status(result["sweep"])["runs"]


def _program(folder: Path) -> tuple[subprocess.CompletedProcess[str], ApiProject]:
    project = ApiProject.with_script(folder)
    shutil.copy(ROOT / "tests" / "program" / "logs_metric.py", project.path)
    script = (
        "import sweeper\n"
        "config = {'program': 'logs_metric.py', 'method': 'grid',\n"
        "          'metric': {'name': 'score', 'goal': 'maximize'},\n"
        "          'parameters': {'lr': {'values': [0.5, 2.0]}}}\n"
        "summary = sweeper.agent(sweeper.sweep(config), count=1, gpus='none')\n"
        "print(summary.line())\n"
    )
    return project.python("-c", script), project


def _not_a_program(folder: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    project = ApiProject.with_script(folder)
    script = (
        "import sweeper\n"
        "from sweeper.errors import SweeperError\n"
        "sweep_id = sweeper.sweep({'method': 'random', 'metric': {'name': 'loss'},\n"
        "                         'parameters': {'width': {'values': [8, 16]}}})\n"
        "try:\n"
        "    sweeper.agent(sweep_id)\n"
        "except SweeperError as exc:\n"
        "    print(exc)\n"
    )
    completed = project.python("-c", script)
    refused = project.python("-m", "sweeper", "agent", "--gpus", "none", check=False)
    return completed, refused


def _bad_config(folder: Path) -> tuple[subprocess.CompletedProcess[str], bool]:
    project = ApiProject.with_script(folder)
    script = (
        "import sweeper\n"
        "from sweeper.errors import SpecError\n"
        "try:\n"
        "    sweeper.sweep({'method': 'grid', 'metric': {'name': 'loss'},\n"
        "                   'parameters': {'lr': {'distribution': 'uniform', 'min': 0, 'max': 1}}})\n"
        "except SpecError as exc:\n"
        "    print(exc.problems)\n"
    )
    completed = project.python("-c", script)
    return completed, (project.path / ".sweeper" / "store.db").exists()


def _readme(folder: Path) -> list[dict[str, Any]]:
    project = ApiProject.with_script(folder)
    readme = (ROOT / "README.md").read_text()
    head = "```python\nimport sweeper, wandb\n"
    example = head[len("```python\n") :] + readme.split(head, 1)[1].split("```", 1)[0]
    (project.path / "example.py").write_text(example)
    project.python("example.py")
    return list(project.status()["runs"])  # the current sweep: the one the example created


#: The module's scripts, the longest first (tests/shared_runs.py).
SHARED_RUNS = {
    "count": _count_then_the_rest,
    "hyperband": _hyperband,
    "readme": _readme,
    "program": _program,
    "ctrl_c": _ctrl_c,
    "not_a_program": _not_a_program,
    "bad_config": _bad_config,
}


@pytest.mark.slow
@pytest.mark.shared_run("count")
def test_count_failures_and_a_grid_finished_once_per_config(shared_run: tuple[Any, ...]) -> None:
    first, runs, second, runs_after_second, project = shared_run
    assert (first["summary"]["started"], first["summary"]["reason"]) == (3, "count 3 reached")
    assert len(runs) == 3
    by_lr = {run["config"]["lr"]: run for run in runs}
    assert by_lr[2.0]["state"] == "failed"
    assert by_lr[2.0]["reason"] == "ValueError: lr 2.0 is too large"
    assert {(by_lr[lr]["state"], by_lr[lr]["epochs"]) for lr in (0.5, 0.25)} == {("finished", 3)}
    # The bare wandb.init() got the nested config, as W&B's agent hands it over.
    assert project.received()[0]["config"] == {
        "lr": 0.5,
        "model": {"width": 8, "bn": True},
    }

    assert "grid exhausted" in second.stdout, second.stdout + second.stderr
    assert Counter((r["config"]["lr"], r["state"]) for r in runs_after_second) == Counter(
        [(0.5, "finished"), (2.0, "failed"), (0.25, "finished"), (0.125, "finished")]
    )
    assert Counter(r["config"]["lr"] for r in project.received()) == Counter(
        [0.5, 2.0, 0.25, 0.125]
    )


@pytest.mark.slow
@pytest.mark.shared_run("hyperband")
def test_hyperband_stops_a_function_that_falls_behind(shared_run: ResultAndRuns) -> None:
    result, runs = shared_run
    assert result["summary"]["stopped"] == 1
    runs = sorted(runs, key=lambda r: r["config"]["lr"])
    assert [r["state"] for r in runs] == ["stopped", "finished", "finished"]
    assert "hyperband" in runs[0]["reason"]


@pytest.mark.slow
@pytest.mark.shared_run("ctrl_c")
def test_ctrl_c_puts_the_run_back_in_the_queue_and_returns(shared_run: ResultAndRuns) -> None:
    result, runs = shared_run
    assert (result["summary"]["reason"], result["summary"]["requeued"]) == ("Ctrl-C", 1)
    (run,) = runs
    assert (run["state"], run["reason"]) == ("pending", "agent stopped (Ctrl-C)")


@pytest.mark.slow
@pytest.mark.shared_run("program")
def test_without_a_function_the_agent_runs_the_sweeps_program(
    shared_run: tuple[subprocess.CompletedProcess[str], ApiProject],
) -> None:
    completed, project = shared_run
    assert "1 runs: 1 finished" in completed.stdout
    (received,) = project.received()
    assert received["config"] == {"lr": 0.5}


@pytest.mark.shared_run("not_a_program")
def test_a_function_sweep_cannot_run_as_a_program(
    shared_run: tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]],
) -> None:
    completed, refused = shared_run
    assert "names no program" in completed.stdout
    assert "pass function=" in completed.stdout
    # The CLI refuses it too, before any worker starts.
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "names no program" in refused.stderr and "function=train" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.shared_run("bad_config")
def test_a_bad_config_is_refused_before_anything_is_stored(
    shared_run: tuple[subprocess.CompletedProcess[str], bool],
) -> None:
    completed, stored = shared_run
    assert "grid search enumerates" in completed.stdout
    assert not stored


def test_import_sweeper_stays_light() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sweeper; print(sorted(m for m in ('sweeper.api', 'agent', 'wandb')"
            " if m in sys.modules)); print(callable(sweeper.sweep), 'sweeper.api' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split("\n")[:2] == ["[]", "True True"]


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    import sweeper

    with pytest.raises(AttributeError, match="no attribute 'swep'"):
        sweeper.swep  # noqa: B018


@pytest.mark.slow
@pytest.mark.shared_run("readme")
def test_the_readme_example_runs_as_written(shared_run: list[dict[str, Any]]) -> None:
    runs = shared_run
    assert sorted((r["config"]["lr"], r["state"], r["epochs"], r["metric"]) for r in runs) == [
        (0.01, "finished", 3, pytest.approx(0.01 / 3)),
        (0.1, "finished", 3, pytest.approx(0.1 / 3)),
    ]
