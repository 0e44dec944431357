"""Tests for agent.supervisor: real worker processes, a real local store, real signals.

The fake trainer (tests/agent/fake_trainer.py) stands in for `trainer.train`; the last
test runs the real trainer on a tiny image folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent import run_agent
from sweeper.backends.local import LocalBackend
from sweeper.errors import AgentError
from sweeper.models import RunState, SweepState
from sweeper.paths import Home
from tests.agent.agent_testkit import (
    FAKE,
    AgentThread,
    configs,
    make_sweep,
    runs_of,
    started_marks,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("agent_env")

LR = [1e-3, 1e-4]
DROPOUT = [0.0, 0.3]
GRID_2x2 = {"lr": LR, "dropout": DROPOUT}
ALL_2x2 = sorted((lr, d) for lr in LR for d in DROPOUT)


def _agent(sweep_id: str, **kwargs: Any) -> Any:
    kwargs.setdefault("trainer", FAKE)
    kwargs.setdefault("heartbeat_s", 2.0)
    return run_agent(sweep_id, home=Home(), **kwargs)


def _nothing_running(sweep_id: str) -> None:
    states = Counter(r.state for r in runs_of(sweep_id))
    assert states[RunState.running] == 0, states


def test_grid_runs_every_config_exactly_once_on_two_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_RENDEZVOUS", "2")
    sweep_id = make_sweep(GRID_2x2)
    summary = _agent(sweep_id, per_gpu=2)
    runs = runs_of(sweep_id)
    assert configs(runs, RunState.finished, "lr", "dropout") == ALL_2x2
    assert len(runs) == 4
    assert summary.finished == summary.started == 4
    assert summary.ok and summary.reason.startswith("grid exhausted")
    assert {r.worker.rsplit("-", 2)[1] for r in runs if r.worker} == {"s0", "s1"}
    assert LocalBackend(Home()).get_sweep(sweep_id).state == SweepState.finished
    for run in runs:
        assert run.summary["best_val_accuracy"] == run.metric
        assert "history" not in run.summary
        log = Home().log_path(sweep_id, run.id).read_text()
        assert f"run {run.id}: finished" in log


def test_a_slot_trains_its_runs_in_one_warm_process(agent_env: Path) -> None:
    sweep_id = make_sweep(GRID_2x2)
    summary = _agent(sweep_id)
    assert summary.finished == 4
    assert len({pid for _, pid in started_marks(agent_env)}) == 1
    assert len({r.worker for r in runs_of(sweep_id)}) == 1
    assert _agent_log(sweep_id).count("started worker") == 1


def _processes_and_reasons(agent_env: Path, sweep_id: str) -> tuple[int, list[str]]:
    """How many processes trained the sweep's runs, and why each fresh one was owed."""
    pids = {pid for _, pid in started_marks(agent_env)}
    reasons = [
        line.split("fresh process owed", 1)[1]
        for line in _agent_log(sweep_id).splitlines()
        if "fresh process owed" in line
    ]
    return len(pids), reasons


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "env", "swept", "processes", "reason"),
    [
        ({"fresh_process": True}, {}, GRID_2x2, 4, "a fresh process per run (--fresh-process)"),
        ({"trainer": "tests.agent.fake_trainer:single_use"}, {}, GRID_2x2, 4, "opts out of reuse"),
        ({"max_runs_per_worker": 2}, {}, GRID_2x2, 2, "trained 2 runs, the most per process"),
        # Readings 400, 700, 1000 MiB: the baseline is the first; 600 MiB > 500 after run 3.
        (
            {
                "memory_probe": "tests.agent.fake_trainer:growing_memory",
                "max_memory_growth_mb": 500,
            },
            {"FAKE_GROWTH_MB": "300"},
            GRID_2x2,
            2,
            "RSS grew 600 MiB over its baseline (limit 500 MiB)",
        ),
        ({"max_failures": 5}, {"FAKE_FAIL_ODD": "1"}, GRID_2x2, 3, "failed"),
        ({}, {}, {"device": ["cpu", "auto"]}, 2, "the next run needs device"),
    ],
    ids=["fresh-process", "opt-out", "max-runs", "memory", "failed", "device"],
)
def test_every_recycle_reason_gives_a_fresh_process_and_says_why(
    agent_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    env: dict[str, str],
    swept: dict[str, list[Any]],
    processes: int,
    reason: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sweep_id = make_sweep(swept)
    summary = _agent(sweep_id, **kwargs)
    runs = runs_of(sweep_id)
    assert summary.finished + summary.failed == len(runs) == summary.started
    count, reasons = _processes_and_reasons(agent_env, sweep_id)
    assert count == processes, reasons
    assert reasons and all(reason in line for line in reasons[: processes - 1]), reasons
    _nothing_running(sweep_id)


def test_count_stops_after_that_many_runs() -> None:
    sweep_id = make_sweep(GRID_2x2)
    summary = _agent(sweep_id, count=3, per_gpu=2)
    assert summary.reason == "--count 3 reached"
    assert summary.started == summary.finished == 3
    assert len(configs(runs_of(sweep_id), RunState.finished, "lr")) == 3
    _nothing_running(sweep_id)


def test_the_loop_wakes_when_a_worker_speaks_not_at_its_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an hour-long tick the agent still trains and ends: a spare's "ready", a run's
    "done" and a worker's exit each wake the loop (AgentThread gives it PATIENCE_S * 2)."""
    monkeypatch.setattr("agent.supervisor.TICK_S", 3600.0)
    sweep_id = make_sweep(GRID_2x2)
    agent = AgentThread(sweep_id)
    agent.start()
    summary = agent.result()
    assert summary.finished == 4, summary
    assert configs(runs_of(sweep_id), RunState.finished, "lr", "dropout") == ALL_2x2


def test_run_cap_is_honoured() -> None:
    sweep_id = make_sweep(GRID_2x2, run_cap=2)
    summary = _agent(sweep_id)
    assert summary.reason == "run_cap 2 reached"
    assert summary.finished == 2
    assert len(runs_of(sweep_id)) == 2


@pytest.mark.slow
def test_bayes_with_run_cap_22_on_the_24_config_space_gives_22_distinct_configs() -> None:
    space = {"epochs": [1, 2], "dropout": [0.0, 0.2, 0.3], "batch_size": [32, 64], "lr": LR}
    sweep_id = make_sweep(space, method="bayes", run_cap=22)
    summary = _agent(sweep_id, per_gpu=2)
    finished = configs(runs_of(sweep_id), RunState.finished, *space)
    assert summary.reason == "run_cap 22 reached"
    assert len(finished) == 22
    assert len(set(finished)) == 22


def test_consecutive_failures_stop_the_agent_with_the_last_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_FAIL_BATCH", "64")
    sweep_id = make_sweep({"lr": LR, "dropout": DROPOUT}, fixed={"batch_size": 64})
    summary = _agent(sweep_id, max_failures=2)
    assert not summary.ok
    assert summary.reason == "2 consecutive failures: TrainerError: fake failure for batch_size 64"
    assert summary.failed == 2 and summary.finished == 0
    failed = [r for r in runs_of(sweep_id) if r.state == RunState.failed]
    assert [r.reason for r in failed] == ["TrainerError: fake failure for batch_size 64"] * 2
    _nothing_running(sweep_id)


def test_a_success_resets_the_failure_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL_ODD", "1")
    sweep_id = make_sweep({"lr": LR, "dropout": DROPOUT})
    summary = _agent(sweep_id, max_failures=2)
    assert summary.ok
    assert (summary.failed, summary.finished) == (2, 2)


REAPER = """
import time
from sweeper.backends.local import LocalBackend
backend = LocalBackend()
print("reaping", flush=True)
while True:
    for run in backend.reap_stale():
        print(run.id, flush=True)
    time.sleep(0.1)
"""


def test_heartbeats_keep_a_run_longer_than_its_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lease 3 x 0.3 s; the run takes 3 s while another process keeps reaping stale runs.
    monkeypatch.setenv("FAKE_EPOCH_S", "1.0")
    sweep_id = make_sweep({"lr": [1e-4]}, epochs=3)
    reaper = subprocess.Popen([sys.executable, "-c", REAPER], stdout=subprocess.PIPE, text=True)
    try:
        assert reaper.stdout is not None and reaper.stdout.readline() == "reaping\n"
        summary = _agent(sweep_id, heartbeat_s=0.3)
    finally:
        reaper.kill()
    reaped, _ = reaper.communicate(timeout=60)
    assert reaped.split() == []
    assert (summary.finished, summary.crashed) == (1, 0)


@pytest.mark.slow
def test_hyperband_stops_weak_runs_with_the_reason() -> None:
    # One slot, so the strong runs (lr 1e-4) are the history the weak ones are cut against.
    sweep_id = make_sweep(
        {"lr": [1e-4, 1e-3], "dropout": [0.3, 0.2, 0.1, 0.0]},
        epochs=6,
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2},
    )
    summary = _agent(sweep_id)
    runs = runs_of(sweep_id)
    stopped = [r for r in runs if r.state == RunState.stopped]
    assert stopped, [(r.state, r.config, r.epochs) for r in runs]
    assert summary.stopped == len(stopped)
    for run in stopped:
        assert run.reason is not None and run.reason.startswith("hyperband")
        assert run.epochs < 6
        assert run.summary["stopped_early"] is True


@pytest.mark.slow
def test_kill_9_of_a_worker_crashes_the_run_and_reruns_its_config(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "1.0")
    sweep_id = make_sweep({"lr": LR}, epochs=2)
    agent = AgentThread(sweep_id, heartbeat_s=2.0)
    agent.start()
    run_id, pid = wait_for(lambda: started_marks(agent_env), "the first run to start")[0]
    os.kill(pid, signal.SIGKILL)
    summary = agent.result()
    runs = runs_of(sweep_id)
    crashed = [r for r in runs if r.state == RunState.crashed]
    assert [(r.id, r.reason) for r in crashed] == [(run_id, "worker killed by SIGKILL")]
    assert configs(runs, RunState.finished, "lr") == [(lr,) for lr in sorted(LR)]
    assert (summary.crashed, summary.finished) == (1, 2)
    _nothing_running(sweep_id)


@pytest.mark.slow
def test_kill_9_of_a_reused_worker_costs_only_the_run_it_was_in(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "0.5")
    sweep_id = make_sweep({"lr": [1e-3, 1e-4, 1e-5]}, epochs=2)
    agent = AgentThread(sweep_id, heartbeat_s=2.0)
    agent.start()
    (first, pid), (second, again) = wait_for(
        lambda: started_marks(agent_env)[:2] if len(started_marks(agent_env)) >= 2 else None,
        "the second run to start",
    )
    assert again == pid  # the second run is in the first run's warm process
    os.kill(pid, signal.SIGKILL)
    summary = agent.result()
    runs = runs_of(sweep_id)
    assert [(r.id, r.reason) for r in runs if r.state == RunState.crashed] == [
        (second, "worker killed by SIGKILL")
    ]
    assert LocalBackend(Home()).get_run(first).state == RunState.finished
    assert sorted(configs(runs, RunState.finished, "lr")) == [(1e-5,), (1e-4,), (1e-3,)]
    assert (summary.crashed, summary.finished) == (1, 3)
    _nothing_running(sweep_id)


@pytest.mark.slow
def test_a_hung_reused_worker_is_killed_and_only_its_run_crashes(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_HANG_NTH", "2")
    sweep_id = make_sweep({"lr": [1e-3, 1e-4, 1e-5]})
    summary = _agent(sweep_id, heartbeat_s=0.5)
    runs = runs_of(sweep_id)
    crashed = [r for r in runs if r.state == RunState.crashed]
    assert len(crashed) == 1 and crashed[0].reason is not None
    assert crashed[0].reason.startswith("worker hung: no heartbeat")
    marks = started_marks(agent_env)
    assert marks[1][0] == crashed[0].id and marks[1][1] == marks[0][1]  # it was reused
    assert len(configs(runs, RunState.finished, "lr")) == 3
    assert (summary.crashed, summary.finished) == (1, 3)
    _nothing_running(sweep_id)


@pytest.mark.slow
def test_kill_9_of_the_agent_then_a_new_agent_reruns_the_config(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch, agent_process: Any
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "1.0")
    sweep_id = make_sweep({"lr": LR}, epochs=2)
    first = agent_process(sweep_id, heartbeat_s=0.3)
    run_id, worker_pid = wait_for(lambda: started_marks(agent_env), "the first run to start")[0]
    first.proc.kill()
    first.proc.wait()
    # Its workers die with it (PR_SET_PDEATHSIG), leaving the run `running` until its lease ends.
    wait_for(lambda: not Path(f"/proc/{worker_pid}").exists(), "the orphaned worker to die")
    monkeypatch.setenv("FAKE_EPOCH_S", "0.02")
    summary = _agent(sweep_id, heartbeat_s=0.3)
    runs = runs_of(sweep_id)
    crashed = {r.id: r for r in runs if r.state == RunState.crashed}
    assert list(crashed) == [run_id]
    assert crashed[run_id].reason is not None and "no heartbeat" in crashed[run_id].reason
    assert configs(runs, RunState.finished, "lr") == [(lr,) for lr in sorted(LR)]
    assert summary.ok
    _nothing_running(sweep_id)


def test_sigterm_requeues_the_running_run(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch, agent_process: Any
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "2.0")
    sweep_id = make_sweep({"lr": LR}, epochs=3)
    agent = agent_process(sweep_id, per_gpu=2)
    wait_for(lambda: len(started_marks(agent_env)) == 2, "both runs to start")
    agent.proc.send_signal(signal.SIGTERM)
    code, summary = agent.finish()
    assert code == 0
    assert summary.reason == "stopped by SIGTERM"
    assert summary.requeued == 2
    runs = runs_of(sweep_id)
    assert [(r.state, r.reason, r.epochs) for r in runs] == [
        (RunState.pending, "agent stopped (SIGTERM)", 0)
    ] * 2
    assert "slot 0 run" in agent.output and "requeued (agent stopped (SIGTERM))" in agent.output


@pytest.mark.slow
def test_sigterm_leaves_complete_offline_wandb_runs_for_sync(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch, agent_process: Any
) -> None:
    from sweeper.wandb import runfile
    from sweeper.wandb.sync import offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("FAKE_EPOCH_S", "1.0")
    sweep_id = make_sweep({"lr": LR}, epochs=3)
    agent = agent_process(sweep_id)
    wait_for(lambda: len(started_marks(agent_env)) == 1, "the run to start")
    agent.proc.send_signal(signal.SIGTERM)
    code, summary = agent.finish()
    assert (code, summary.requeued) == (0, 1)
    # The wandb helper wrote every run, the interrupted one too, to its end before the
    # worker exited.
    runs = offline_runs(Home())
    assert len(runs) == summary.started
    for run in runs:
        assert run.group == sweep_id and not run.marker.exists()
        kinds = [r.WhichOneof("record_type") for r in runfile.records(run.wandb_file)]
        assert "exit" in kinds and "summary" in kinds


def test_second_ctrl_c_kills_workers_and_the_agent_requeues_their_runs(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch, agent_process: Any
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "2.0")
    monkeypatch.setenv("FAKE_IGNORE_STOP", "1")  # the run would not stop at a batch boundary
    sweep_id = make_sweep({"lr": LR}, epochs=3)
    agent = agent_process(sweep_id)
    (run_id, pid), *_ = wait_for(lambda: started_marks(agent_env), "the run to start")
    agent.proc.send_signal(signal.SIGINT)
    wait_for(
        lambda: "stopping: stopped by Ctrl-C" in _agent_log(sweep_id), "the agent to act on Ctrl-C"
    )
    agent.proc.send_signal(signal.SIGINT)
    code, summary = agent.finish()
    assert code == 0
    assert summary.reason == "stopped by Ctrl-C"
    assert summary.requeued == 1
    assert not Path(f"/proc/{pid}").exists()
    run = LocalBackend(Home()).get_run(run_id)
    assert run.state == RunState.pending
    assert run.reason == "agent stopped before the run could re-queue itself"


def _agent_log(sweep_id: str) -> str:
    path = Home().agent_log_path(sweep_id)
    return path.read_text() if path.exists() else ""


def test_pause_from_another_process_stops_the_agent(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "2.0")
    sweep_id = make_sweep({"lr": LR}, epochs=5)
    agent = AgentThread(sweep_id, heartbeat_s=1.0)
    agent.start()
    run_id, _ = wait_for(lambda: started_marks(agent_env), "the run to start")[0]
    pause = f"from sweeper.backends.local import LocalBackend; LocalBackend().set_sweep_state({sweep_id!r}, 'paused')"
    subprocess.run([sys.executable, "-c", pause], check=True)
    summary = agent.result()
    assert summary.reason == "sweep paused"
    assert summary.requeued == 1
    run = LocalBackend(Home()).get_run(run_id)
    assert (run.state, run.reason) == (RunState.pending, "sweep paused")


def test_cancel_stops_the_running_run(agent_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "2.0")
    sweep_id = make_sweep({"lr": LR}, epochs=5)
    agent = AgentThread(sweep_id, heartbeat_s=1.0)
    agent.start()
    run_id, _ = wait_for(lambda: started_marks(agent_env), "the run to start")[0]
    LocalBackend(Home()).set_sweep_state(sweep_id, SweepState.canceled)
    summary = agent.result()
    assert summary.reason == "sweep canceled"
    run = LocalBackend(Home()).get_run(run_id)
    assert (run.state, run.reason) == (RunState.stopped, "sweep canceled")
    assert summary.stopped == 1
    _nothing_running(sweep_id)


@pytest.mark.slow
def test_two_agents_split_one_sweep(
    agent_env: Path, agent_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")
    sweep_id = make_sweep({"lr": LR, "dropout": [0.0, 0.1, 0.2, 0.3]})
    other = agent_process(sweep_id, heartbeat_s=2.0)
    # A warm worker trains these runs back to back faster than a loaded machine starts
    # the other agent's first worker: start this agent once the other one trains.
    wait_for(lambda: started_marks(agent_env), "the other agent's first run")
    mine = _agent(sweep_id)
    code, theirs = other.finish()
    runs = runs_of(sweep_id)
    assert code == 0
    assert len(configs(runs, RunState.finished, "lr", "dropout")) == len(runs) == 8
    assert mine.finished + theirs.finished == 8
    assert mine.finished > 0 and theirs.finished > 0
    assert len({r.worker.split("-")[-3] for r in runs if r.worker}) == 2


def test_a_trainer_that_cannot_be_imported_is_an_agent_error() -> None:
    sweep_id = make_sweep({"lr": LR})
    with pytest.raises(
        AgentError, match="the worker cannot start: --trainer 'no_such_module:train': cannot import"
    ):
        _agent(sweep_id, trainer="no_such_module:train")
    assert runs_of(sweep_id) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus": "3"}, "GPU 3 requested but 0 GPUs visible"),
        ({"count": 0}, "--count must be at least 1"),
        ({"max_failures": 0}, "--max-failures must be at least 1"),
        ({"per_gpu": 0}, "--per-gpu must be at least 1"),
    ],
)
def test_user_errors_before_any_worker_starts(kwargs: dict[str, Any], message: str) -> None:
    sweep_id = make_sweep({"lr": LR})
    with pytest.raises(AgentError, match=message):
        _agent(sweep_id, **kwargs)
    assert not Home().agent_log_path(sweep_id).exists()


@pytest.mark.slow
def test_real_trainer_end_to_end(image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    fixed = {
        "data_dir": str(image_folder),
        "model": "cnn",
        "mode": "scratch",
        "weights": "none",
        "image_size": 16,
        "batch_size": 8,
        "num_workers": 0,
        "filters": 4,
        "dense_units": 8,
    }
    swept = {"lr": LR, "seed": [0, 1]}
    results: dict[bool, dict[tuple[float, int], Any]] = {}
    for fresh in (False, True):
        sweep_id = make_sweep(swept, epochs=2, fixed=fixed)
        summary = run_agent(sweep_id, home=Home(), heartbeat_s=2.0, fresh_process=fresh)
        runs = runs_of(sweep_id)
        assert summary.finished == 4, [(r.state, r.reason) for r in runs]
        assert len({r.worker for r in runs}) == (4 if fresh else 1)
        for run in runs:
            assert run.state == RunState.finished
            assert len(run.history) == 2
            assert 0.0 <= run.summary["test_accuracy"] <= 1.0
            assert Path(run.summary["checkpoint_path"]).is_relative_to(
                Home().checkpoint_dir(sweep_id, run.id)
            )
        results[fresh] = {
            (r.config["lr"], r.config["seed"]): (
                [(h["train_loss"], h["val_accuracy"]) for h in r.history],
                r.summary["test_accuracy"],
                r.summary["confusion_matrix"],
            )
            for r in runs
        }
    # Runs back to back in one process give what fresh processes give, seed for seed.
    assert results[False] == results[True]
    wandb_runs = list((Home().wandb_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 8


@pytest.mark.slow
@pytest.mark.parametrize(("option", "processes"), [([], 1), (["--fresh-process"], 2)])
def test_sweeper_agent_reuses_its_worker_unless_told_fresh_process(
    agent_env: Path, option: list[str], processes: int
) -> None:
    from typer.testing import CliRunner

    from sweeper.cli import app

    sweep_id = make_sweep({"lr": LR})
    result = CliRunner().invoke(
        app, ["agent", sweep_id, "--gpus", "none", "--trainer", FAKE, *option]
    )
    assert result.exit_code == 0, result.output
    assert len({pid for _, pid in started_marks(agent_env)}) == processes
    assert configs(runs_of(sweep_id), RunState.finished, "lr") == [(lr,) for lr in sorted(LR)]
