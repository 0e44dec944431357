"""Tests for agent.process: the supervisor's handle on a real `python -m agent.worker` process."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from agent.process import WorkerProcess, worker_env
from agent.slots import Slot
from sweeper.backends.local import LocalBackend
from sweeper.models import RunState
from sweeper.paths import Home
from tests.agent.agent_testkit import FAKE, PATIENCE_S, make_sweep, started_marks, wait_for

pytestmark = pytest.mark.usefixtures("agent_env")

CPU = Slot(index=0, gpu=None)
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(
    ("slot", "visible"), [(CPU, ""), (Slot(index=3, gpu=1, cuda_visible_devices="5"), "5")]
)
def test_worker_env_sets_the_gpu_and_keeps_the_path(slot: Slot, visible: str) -> None:
    agent = {"PYTHONPATH": "/somewhere", "CUDA_VISIBLE_DEVICES": "0,1", "HOME": "/h"}
    env = worker_env(slot, {**agent, "WANDB_SERVICE": "3-357-unix-/tmp/wandb-357/socket"})
    assert "WANDB_SERVICE" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == visible
    assert env["PYTHONPATH"].split(os.pathsep) == ["/somewhere", PROJECT_ROOT]
    assert (env["HOME"], env["PYTHONUNBUFFERED"]) == ("/h", "1")


@pytest.fixture
def agent_log(tmp_path: Path) -> Iterator[IO[bytes]]:
    with open(tmp_path / "agent.log", "ab") as log:
        yield log


def _start(sweep_id: str, log: IO[bytes], trainer: str = FAKE, name: str = "w1") -> WorkerProcess:
    args = ["--home", str(Home().root), "--sweep", sweep_id, "--backend", "local"]
    args += ["--trainer", trainer, "--heartbeat-s", "5"]
    return WorkerProcess(CPU, name, args, log)


def _exit_code(worker: WorkerProcess) -> int | None:
    wait_for(lambda: worker.poll() is not None, "the worker to exit")
    worker.close()
    return worker.proc.returncode


def _wait_ready(worker: WorkerProcess) -> None:
    wait_for(lambda: worker.poll() is not None or worker.ready, "the spare to be ready")
    assert worker.ready, worker.exit_description()


def test_a_spare_says_ready_and_leaves_on_end_of_file(agent_log: IO[bytes]) -> None:
    worker = _start(make_sweep({"lr": [1e-3]}), agent_log)
    _wait_ready(worker)
    worker.release()
    assert _exit_code(worker) == 0
    assert worker.error is None


def test_a_ready_spare_leaves_on_sigterm(agent_log: IO[bytes]) -> None:
    worker = _start(make_sweep({"lr": [1e-3]}), agent_log)
    _wait_ready(worker)
    worker.terminate()
    assert _exit_code(worker) == 0


def test_a_worker_that_cannot_load_its_trainer_says_why(
    agent_log: IO[bytes], tmp_path: Path
) -> None:
    worker = _start(make_sweep({"lr": [1e-3]}), agent_log, trainer="tests.agent.fake_trainer:nope")
    assert _exit_code(worker) == 3
    assert not worker.ready
    assert (
        worker.error
        == "--trainer 'tests.agent.fake_trainer:nope': 'tests.agent.fake_trainer' has no function 'nope'"
    )
    assert "worker cannot start" in (tmp_path / "agent.log").read_text()


def _train_next(worker: WorkerProcess, sweep_id: str) -> str:
    """Claim the sweep's next run for `worker`, hand it over, wait until it is done."""
    claim = LocalBackend(Home()).claim_run(sweep_id, worker.name, lease_s=30)
    assert claim.run is not None
    worker.assign(claim.run.id)
    done = wait_for(lambda: worker.poll() is not None or worker.take_done(), "the run to be done")
    assert done == [(claim.run.id, "finished")], worker.exit_description()
    return claim.run.id


def test_an_assigned_run_is_trained_and_logged_to_its_own_file(agent_log: IO[bytes]) -> None:
    sweep_id = make_sweep({"lr": [1e-3]})
    worker = _start(sweep_id, agent_log)
    _wait_ready(worker)
    run_id = _train_next(worker, sweep_id)
    assert LocalBackend(Home()).get_run(run_id).state == RunState.finished
    log = Home().log_path(sweep_id, run_id).read_text()
    assert f"w1 INFO run {run_id}: finished" in log
    assert "memory after the run: rss" in log
    worker.release()
    assert _exit_code(worker) == 0


def test_a_warm_worker_trains_runs_back_to_back_in_one_process(
    agent_env: Path, agent_log: IO[bytes], tmp_path: Path
) -> None:
    sweep_id = make_sweep({"lr": [1e-3, 1e-4, 1e-5]})
    worker = _start(sweep_id, agent_log)
    _wait_ready(worker)
    assert worker.facts.reusable
    runs = [_train_next(worker, sweep_id) for _ in range(3)]
    assert worker.idle and worker.facts.runs == 3
    assert worker.facts.baseline is not None and worker.facts.memory is not None
    assert worker.facts.memory.rss > 0
    pids = {pid for _, pid in started_marks(agent_env)}
    assert pids == {worker.pid}
    for run_id in runs:  # each run's output went to its own log, not the next one's
        assert Home().log_path(sweep_id, run_id).read_text().count(": finished") == 1
    worker.release()
    assert _exit_code(worker) == 0
    agent_log_text = (tmp_path / "agent.log").read_text()
    assert not any(f"run {run_id}: finished" in agent_log_text for run_id in runs)


def test_a_trainer_that_opts_out_of_reuse_says_so(agent_log: IO[bytes]) -> None:
    worker = _start(
        make_sweep({"lr": [1e-3]}), agent_log, trainer="tests.agent.fake_trainer:single_use"
    )
    _wait_ready(worker)
    assert not worker.facts.reusable
    worker.release()
    assert _exit_code(worker) == 0


def test_sigterm_between_runs_ends_the_worker(agent_log: IO[bytes]) -> None:
    sweep_id = make_sweep({"lr": [1e-3, 1e-4]})
    worker = _start(sweep_id, agent_log)
    _wait_ready(worker)
    _train_next(worker, sweep_id)
    worker.terminate()
    assert _exit_code(worker) == 0


def test_a_killed_worker_is_described_by_its_signal(agent_log: IO[bytes]) -> None:
    worker = _start(make_sweep({"lr": [1e-3]}), agent_log)
    _wait_ready(worker)
    os.kill(worker.pid, signal.SIGKILL)
    assert _exit_code(worker) == -signal.SIGKILL
    assert worker.exit_description() == "worker killed by SIGKILL"
    assert not worker.killed_by_supervisor


def test_kill_marks_the_worker_as_killed_by_the_supervisor(agent_log: IO[bytes]) -> None:
    worker = _start(make_sweep({"lr": [1e-3]}), agent_log)
    worker.kill()
    assert worker.wait(PATIENCE_S) == -signal.SIGKILL
    worker.close()
    assert worker.killed_by_supervisor
