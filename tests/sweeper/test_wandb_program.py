"""Program sweeps on the W&B backend: the user's script runs under the worker as `wandb agent`
would run it, joins the run W&B's controller issued, and its end reaches W&B.

The worker (`agent.worker.Worker`, in this process so it reaches the fake W&B of
tests/sweeper/fake_wandb.py) runs tests/program/logs_metric.py as a real subprocess. The
fake serves the controller, not a run stream, so the script runs offline
(WANDB_MODE=offline, as the agent here does): the fake reads what the script logged from
its `.wandb` file, as the server would receive it online.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.worker import Worker
from sweeper.cli import app
from sweeper.models import RunState
from sweeper.paths import Home
from sweeper.spec import parse_spec
from sweeper.wandb.backend import PROGRAM_STEP_HEARTBEAT_S, WandbBackend
from tests.sweeper.fake_wandb import FakeWandb, fresh_wandb_session, serve  # noqa: F401 - autouse fixture

from .conftest import FakeClock

SCRIPT = Path(__file__).resolve().parents[1] / "program" / "logs_metric.py"

PROGRAM = """
name: prog
method: grid
metric: {name: score, goal: maximize}
program: logs_metric.py
parameters:
  lr: {values: [0.5]}
  optimizer:
    parameters:
      name: {value: adam}
"""


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWandb:
    shutil.copy(SCRIPT, tmp_path / SCRIPT.name)  # the working directory, as a user's project
    return serve(monkeypatch, tmp_path)


@pytest.fixture
def backend(fake: FakeWandb) -> WandbBackend:
    clock = FakeClock(start=0.0)
    return WandbBackend(Home(), sleep=clock.sleep, clock=clock)


Runner = Callable[[str, str], str]


@pytest.fixture
def run_in_worker(backend: WandbBackend) -> Runner:
    """Claim the next run of a sweep as worker `name` and run it in a worker, warmed up as
    the agent's are; the state it ended in."""

    def run(sweep_id: str, name: str = "w1") -> str:
        worker = Worker(Home(), "wandb", "trainer:train", name, heartbeat_s=0.2)
        worker.warm_up()
        claim = backend.claim_run(sweep_id, name)
        assert claim.run is not None, claim.reason
        return worker.run(claim.run.id)

    return run


def segments(fake: FakeWandb, run_id: str) -> list[dict[str, Any]]:
    """Each `.wandb` file of the run: its run record's fields and its exit code."""
    found = []
    for records in fake.run_files()[run_id]:
        kinds = {r.WhichOneof("record_type"): r for r in records}
        run = kinds["run"].run
        found.append(
            {
                "sweep_id": run.sweep_id,
                "entity": run.entity,
                "project": run.project,
                "exit": kinds["exit"].exit.exit_code if "exit" in kinds else None,
            }
        )
    return found


@pytest.mark.slow
def test_the_script_joins_the_run_w_and_b_issued_and_ends_it_itself(
    fake: FakeWandb, backend: WandbBackend, run_in_worker: Runner
) -> None:
    sweep = backend.create_sweep(parse_spec(PROGRAM), name="prog")
    assert run_in_worker(sweep.id, "w1") == RunState.finished.value
    (run_id,) = fake.runs
    # One segment, the script's own: under the sweep, the issued id, the sweep's project.
    assert segments(fake, run_id) == [
        {"sweep_id": sweep.id, "entity": "team", "project": "sweeper", "exit": 0}
    ]
    uploaded = fake.uploaded()[run_id]
    assert uploaded.config == {"lr": 0.5, "optimizer": {"name": "adam"}}
    assert [row["score"] for row in uploaded.history] == [0.5, 1.0, 1.5]
    run = backend.get_run(run_id)
    assert (run.state, run.metric, run.summary["score"]) == (RunState.finished, 1.5, 1.5)
    assert [e["epoch"] for e in run.history] == [1, 2, 3]
    assert backend.claim_run(sweep.id, "w1").done  # the grid is done: W&B said exit


@pytest.mark.slow
def test_a_failing_script_fails_on_w_and_b_with_its_reason(
    fake: FakeWandb,
    backend: WandbBackend,
    run_in_worker: Runner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PROGRAM_FAIL", "1")
    sweep = backend.create_sweep(parse_spec(PROGRAM), name="prog")
    assert run_in_worker(sweep.id, "w1") == RunState.failed.value
    (run_id,) = fake.runs
    # The script's own exit code, then sweeper's segment that records why.
    assert [s["exit"] for s in segments(fake, run_id)] == [3, 1]
    # Another host, reading W&B alone, sees the failure and its reason.
    there = WandbBackend(Home(tmp_path / "host2"))
    there.get_sweep(f"team/sweeper/{sweep.id}")
    (seen,) = there.list_runs(sweep.id)
    assert seen.state == RunState.failed
    assert (seen.reason or "").startswith("program exited with code 3")


@pytest.mark.slow
def test_a_killed_script_is_handed_back_and_resumed_under_the_same_id(
    fake: FakeWandb,
    backend: WandbBackend,
    run_in_worker: Runner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PROGRAM_KILL_ONCE", str(tmp_path / "killed"))
    sweep = backend.create_sweep(parse_spec(PROGRAM), name="prog")
    assert run_in_worker(sweep.id, "w1") == RunState.crashed.value
    (run_id,) = fake.runs
    assert backend.get_run(run_id).reason == "program killed by SIGKILL"
    assert fake.uploaded()[run_id].state == "preempted"  # W&B's controller will resume it
    assert run_in_worker(sweep.id, "w2") == RunState.finished.value
    assert set(fake.runs) == {run_id}  # no id the controller did not issue
    run = backend.get_run(run_id)
    assert (run.state, run.attempt, run.summary["score"]) == (RunState.finished, 1, 1.5)


@pytest.mark.slow
def test_w_and_bs_hyperband_stop_ends_a_script_that_falls_behind(
    fake: FakeWandb,
    backend: WandbBackend,
    run_in_worker: Runner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lr 0.01 run waits after its first step until it is stopped: only hyperband ends it.
    monkeypatch.setenv("PROGRAM_HANG_BELOW", "0.1")
    spec = PROGRAM.replace("[0.5]", "[2.0, 1.0, 0.01]") + (
        "early_terminate: {type: hyperband, min_iter: 1, eta: 2}\n"
    )
    sweep = backend.create_sweep(parse_spec(spec), name="hb")
    states = [run_in_worker(sweep.id, "w1") for _ in range(3)]
    assert states == ["finished", "finished", "stopped"]
    poor = backend.list_runs(sweep.id)[-1]
    assert (poor.config["lr"], poor.state) == (0.01, RunState.stopped)
    assert "hyperband" in (poor.reason or "")
    # The script was stopped before it could end its run: sweeper ends it on W&B as stopped.
    assert fake.uploaded()[poor.id].summary["sweeper_state"] == "stopped"


def test_the_script_gets_the_sweeps_entity_project_and_the_agents_mode(
    fake: FakeWandb, backend: WandbBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = backend.create_sweep(parse_spec(PROGRAM), name="prog")
    claim = backend.claim_run(sweep.id, "w1")
    assert claim.run is not None
    assert backend.program_env(claim.run.id) == {
        "WANDB_ENTITY": "team",
        "WANDB_PROJECT": "sweeper",
        "WANDB_MODE": "offline",
    }
    monkeypatch.delenv("WANDB_MODE")
    assert backend.program_env(claim.run.id)["WANDB_MODE"] == "online"  # as `wandb agent`


def test_a_scripts_steps_ask_the_controller_at_most_every_few_seconds(
    fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(start=0.0)
    backend = WandbBackend(Home(), sleep=clock.sleep, clock=clock)
    sweep = backend.create_sweep(parse_spec(PROGRAM), name="prog")
    run = backend.claim_run(sweep.id, "w1").run
    assert run is not None
    before = fake.operations.count("Heartbeat")
    for step in range(100):
        backend.log_epoch(run.id, "w1", {"epoch": step + 1, "score": 0.1})
    clock.advance(PROGRAM_STEP_HEARTBEAT_S)
    backend.log_epoch(run.id, "w1", {"epoch": 101, "score": 0.2})
    assert fake.operations.count("Heartbeat") - before == 2
    assert (backend.get_run(run.id).epochs, backend.get_run(run.id).metric) == (101, 0.2)


def test_cli_creates_a_program_sweep_on_w_and_b(fake: FakeWandb, tmp_path: Path) -> None:
    (tmp_path / "prog.yaml").write_text(PROGRAM)
    runner = CliRunner()
    created = runner.invoke(app, ["create", "prog.yaml", "--backend", "wandb", "--json"])
    assert created.exit_code == 0, created.output
    sweep_id = json.loads(created.output)["id"]
    assert fake.sweeps[sweep_id].config["program"] == "logs_metric.py"
    status = runner.invoke(app, ["status", "--json"])
    assert json.loads(status.output)["backend"] == "wandb", status.output


def test_a_program_sweeps_status_does_not_need_its_script_here(
    fake: FakeWandb, backend: WandbBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = backend.create_sweep(parse_spec(PROGRAM), name="prog")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    reopened = WandbBackend(Home())
    found = reopened.get_sweep("prog")
    assert (found.id, found.spec["program"]) == (sweep.id, "logs_metric.py")
