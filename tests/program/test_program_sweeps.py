"""Program sweeps through the CLI: `sweeper create` + `sweeper agent --gpus none` on a
user's own script, the way `wandb agent` would run it, offline.

Each sweep is a shared run (tests/shared_runs.py): the module's agents run together in the
background, and each test asserts on its own sweep's outcome.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from sweeper.models import RunState
from tests.program.conftest import AgentRun, Project

NESTED = """\
method: grid
metric: {name: score, goal: maximize}
program: logs_metric.py
parameters:
  lr: {values: [0.5, 2.0]}
  optimizer:
    parameters:
      name: {value: adam}
      nesterov: {value: false}
  use_bn: {value: true}
"""

ARGS = """\
method: grid
metric: {name: score, goal: maximize}
program: reads_args.py
command: [COMMAND]
parameters:
  lr: {value: 0.5}
  verbose: {value: false}
  shuffle: {value: true}
  optimizer:
    parameters:
      momentum: {value: 0.9}
"""
MACROS = ("args", "args_no_hyphens", "args_no_boolean_flags", "args_json", "args_json_file")

SUMMARY = """\
method: grid
metric: {name: score, goal: maximize}
program: logs_metric.py
parameters:
  scores: {value: [1.0, 3.0, 2.0]}
  summary_best: {values: [false, true]}
"""


def _racing(folder: Path) -> AgentRun:
    project = Project.with_scripts(folder)
    sweep_id = project.create(NESTED.replace("[0.5, 2.0]", "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]"))
    agents = [project.agent(sweep_id) for _ in range(4)]
    outputs = []
    for agent in agents:
        output, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0, output
        outputs.append(output)
    return AgentRun(project, sweep_id, "".join(outputs))


def _hyperband(folder: Path) -> AgentRun:
    project = Project.with_scripts(folder)
    # The lr 0.01 run waits after its first step until it is stopped: only hyperband ends it.
    project.env["PROGRAM_HANG_BELOW"] = "0.1"
    # At min_iter 1, hyperband keeps the best half of the first values: 2.0 and 1.0 ran first.
    spec = NESTED.replace("[0.5, 2.0]", "[2.0, 1.0, 0.01]") + (
        "early_terminate: {type: hyperband, min_iter: 1, eta: 2}\n"
    )
    return project.swept(spec)


def _killed(folder: Path) -> AgentRun:
    project = Project.with_scripts(folder)
    project.env["PROGRAM_KILL_ONCE"] = str(project.path / "killed")
    return project.swept(NESTED.replace("[0.5, 2.0]", "[0.5]"))


def _sigterm(folder: Path) -> AgentRun:
    project = Project.with_scripts(folder)
    project.env["PROGRAM_HANG_BELOW"] = "10"  # every run waits until it is stopped
    sweep_id = project.create(NESTED)
    agent = project.agent(sweep_id)
    while not (project.out.exists() and project.out.read_text()):
        assert agent.poll() is None, agent.communicate()[0]
        time.sleep(0.05)
    agent.send_signal(signal.SIGTERM)
    output, _ = agent.communicate(timeout=120)
    return AgentRun(project, sweep_id, output)


def _nested(folder: Path) -> AgentRun:
    return Project.with_scripts(folder).swept(NESTED)


def _summary(folder: Path) -> AgentRun:
    return Project.with_scripts(folder).swept(SUMMARY)


def _macros(folder: Path) -> AgentRun:
    tokens = ["${env}", "${interpreter}", "${program}", *(f"${{{m}}}" for m in MACROS)]
    spec = ARGS.replace("COMMAND", ", ".join(f'"{t}"' for t in tokens))
    return Project.with_scripts(folder).swept(spec)


def _failing(folder: Path) -> AgentRun:
    project = Project.with_scripts(folder)
    project.env["PROGRAM_FAIL"] = "1"
    return project.swept(NESTED, "--count", "1")


#: The module's sweeps, the longest first (tests/shared_runs.py).
SHARED_RUNS = {
    "racing": _racing,
    "hyperband": _hyperband,
    "killed": _killed,
    "sigterm": _sigterm,
    "summary": _summary,
    "nested": _nested,
    "failing": _failing,
    "macros": _macros,
}


@pytest.mark.slow
@pytest.mark.shared_run("nested")
def test_a_script_reading_only_wandb_config_gets_nested_and_boolean_values(
    shared_run: AgentRun,
) -> None:
    project, sweep_id = shared_run.project, shared_run.sweep_id
    received = sorted(project.received(), key=lambda r: r["config"]["lr"])
    assert [r["config"] for r in received] == [
        {"lr": lr, "optimizer": {"name": "adam", "nesterov": False}, "use_bn": True}
        for lr in (0.5, 2.0)
    ]
    runs = sorted(project.runs(sweep_id), key=lambda r: r.config["lr"])
    assert [(r.state, r.summary["score"], r.epochs) for r in runs] == [
        (RunState.finished, 1.5, 3),
        (RunState.finished, 6.0, 3),
    ]
    assert [r.metric for r in runs] == [1.5, 6.0]


@pytest.mark.slow
@pytest.mark.shared_run("summary")
def test_a_program_runs_metric_is_its_summary_value_as_wandb_has_it(shared_run: AgentRun) -> None:
    runs = {r.config["summary_best"]: r for r in shared_run.project.runs(shared_run.sweep_id)}
    assert [h["score"] for h in runs[False].history] == [1.0, 3.0, 2.0]
    # The last value logged, not the best: W&B's controller reads the run's summary.
    assert (runs[False].state, runs[False].metric) == (RunState.finished, 2.0)
    # The script set the summary itself: that value wins.
    assert (runs[True].state, runs[True].metric) == (RunState.finished, 3.0)


@pytest.mark.slow
@pytest.mark.shared_run("macros")
def test_a_script_reading_only_its_arguments_gets_every_macro_form_as_wandb_builds_it(
    shared_run: AgentRun,
) -> None:
    project = shared_run.project
    (received,) = project.received()
    forms = create_sweep_command_args(
        {
            "args": {
                "lr": {"value": 0.5},
                "verbose": {"value": False},
                "shuffle": {"value": True},
                "optimizer": {"value": {"momentum": 0.9}},
            }
        }
    )
    json_file = received["argv"][-1]
    assert received["argv"] == [
        *forms["args"],
        *forms["args_no_hyphens"],
        *forms["args_no_boolean_flags"],
        *forms["args_json"],
        json_file,
    ]
    assert json.loads((project.path / json_file).read_text()) == forms["args_dict"]
    assert received["executable"] == sys.executable
    (run,) = project.runs(shared_run.sweep_id)
    assert run.state == RunState.finished
    assert run.summary["score"] == len(received["argv"])


@pytest.mark.slow
@pytest.mark.shared_run("failing")
def test_a_failing_script_fails_with_the_tail_of_its_output(shared_run: AgentRun) -> None:
    (run,) = shared_run.project.runs(shared_run.sweep_id)
    assert run.state == RunState.failed
    assert run.reason is not None
    assert run.reason.startswith("program exited with code 3")
    assert "ValueError: lr too large for this script" in run.reason


@pytest.mark.slow
@pytest.mark.shared_run("killed")
def test_a_killed_script_crashes_and_its_config_runs_again(shared_run: AgentRun) -> None:
    runs = shared_run.project.runs(shared_run.sweep_id)
    assert sorted((r.state, r.reason) for r in runs) == [
        (RunState.crashed, "program killed by SIGKILL"),
        (RunState.finished, None),
    ]
    finished = next(r for r in runs if r.state == RunState.finished)
    assert finished.retry_of == next(r.id for r in runs if r.state == RunState.crashed)


@pytest.mark.slow
@pytest.mark.shared_run("hyperband")
def test_hyperband_stops_a_program_that_falls_behind(shared_run: AgentRun) -> None:
    runs = sorted(shared_run.project.runs(shared_run.sweep_id), key=lambda r: r.config["lr"])
    assert [r.state for r in runs] == [RunState.stopped, RunState.finished, RunState.finished]
    assert runs[0].reason is not None and "hyperband" in runs[0].reason
    assert runs[0].summary["score"] == 0.01


@pytest.mark.slow
@pytest.mark.shared_run("racing")
def test_four_racing_agents_finish_each_grid_config_exactly_once(shared_run: AgentRun) -> None:
    project = shared_run.project
    runs = project.runs(shared_run.sweep_id)
    finished = Counter(r.config["lr"] for r in runs if r.state == RunState.finished)
    assert finished == Counter([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert Counter(r["config"]["lr"] for r in project.received()) == finished


@pytest.mark.slow
@pytest.mark.shared_run("sigterm")
def test_sigterm_to_the_agent_stops_the_program_and_requeues_its_run(
    shared_run: AgentRun,
) -> None:
    (run,) = shared_run.project.runs(shared_run.sweep_id)
    assert (run.state, run.reason) == (RunState.pending, "agent stopped (SIGTERM)"), (
        shared_run.output
    )
