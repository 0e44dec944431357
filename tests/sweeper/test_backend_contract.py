"""One contract suite for every backend: the behaviour `sweeper/backends/base.py` promises.

Each test runs against `local` (a real SQLite store) and `wandb` (RealClient and wandb's
own client, on the fake W&B server of tests/sweeper/fake_wandb.py under wandb's transport;
runs are real offline wandb runs). A backend's known gap is a `pytest.skip` naming the
reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.data import gather
from sweeper.backends.base import Backend
from sweeper.backends.local import LocalBackend
from sweeper.errors import NotFoundError, SweeperError
from sweeper.models import MAX_CRASH_RETRIES, Control, RunState, SweepState
from sweeper.paths import STORE_ENV, Home
from sweeper.spec import SweepSpec, parse_spec
from sweeper.wandb.backend import WandbBackend
from tests.sweeper.fake_wandb import fresh_wandb_session, serve  # noqa: F401 - autouse fixture

from .conftest import FakeClock

GRID = """
name: contract
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  data_dir: {value: data/tiny}
  lr: {values: [0.001, 0.0001]}
  dropout: {values: [0.0, 0.3]}
"""

EPOCH = {
    "epochs": 3,
    "train_loss": 1.0,
    "train_accuracy": 0.5,
    "val_loss": 1.1,
    "lr": 0.001,
    "seconds": 0.1,
    "images_per_second": 100.0,
}


def epoch(n: int, val_accuracy: float) -> dict[str, Any]:
    """One epoch's metrics, keyed as trainer.EpochMetrics."""
    return {**EPOCH, "epoch": n, "val_accuracy": val_accuracy, "best_val_accuracy": val_accuracy}


@pytest.fixture(params=["local", "local-postgres", "wandb"])
def backend(
    request: pytest.FixtureRequest,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
) -> Iterator[Backend]:
    """Each backend on a fresh home, telling time by `clock`: local on SQLite and on a
    fresh PostgreSQL store (the session's throwaway server, named by SWEEPER_STORE as a
    user would); W&B on the fake server, retries without waiting."""
    chosen: Backend
    if request.param.startswith("local"):
        if request.param == "local-postgres":
            monkeypatch.setenv(STORE_ENV, request.getfixturevalue("pg_url"))
        chosen = LocalBackend(Home(), clock=clock)
    else:
        serve(monkeypatch, isolated_env)
        chosen = WandbBackend(Home(), sleep=lambda s: None, now=clock)
    yield chosen
    chosen.close()
    if request.param == "wandb":
        import wandb

        # The fake server's wandb-core session must not serve the next test's offline runs.
        wandb.teardown()


@pytest.fixture
def spec() -> SweepSpec:
    return parse_spec(GRID, "contract.yaml")


def test_create_makes_a_running_current_sweep(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec, name="mine")
    assert (sweep.state, sweep.name, sweep.backend) == (SweepState.running, "mine", backend.name)
    assert (sweep.method, sweep.metric_name, sweep.metric_goal) == (
        "grid",
        "val_accuracy",
        "maximize",
    )
    assert backend.get_sweep(sweep.id).id == sweep.id
    assert backend.get_sweep("mine").id == sweep.id
    assert [s.id for s in backend.list_sweeps()] == [sweep.id]
    assert LocalBackend(Home()).store.get_current() == sweep.id


def test_unknown_ids_are_not_found(backend: Backend, spec: SweepSpec) -> None:
    backend.create_sweep(spec)
    with pytest.raises(NotFoundError):
        backend.get_sweep("nosuchsweep")
    with pytest.raises(NotFoundError):
        backend.get_run("nosuchrun")


def test_claims_hand_each_config_to_one_worker(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    claims = [backend.claim_run(sweep.id, f"w{i}") for i in range(4)]
    runs = [c.run for c in claims if c.run is not None]
    assert len(runs) == 4
    assert len({r.id for r in runs}) == 4
    configs = {(r.config["lr"], r.config["dropout"]) for r in runs}
    assert configs == {(0.001, 0.0), (0.001, 0.3), (0.0001, 0.0), (0.0001, 0.3)}
    for i, run in enumerate(runs):
        assert (run.state, run.worker) == (RunState.running, f"w{i}")
        assert run.config["data_dir"] == "data/tiny"


def test_grid_runs_out_and_the_sweep_ends(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    for _ in range(4):
        run = backend.claim_run(sweep.id, "w").run
        assert run is not None
        assert backend.finish_run(run.id, "w", {"best_val_accuracy": 0.5})
    claim = backend.claim_run(sweep.id, "w")
    assert claim.run is None and claim.done
    assert claim.reason


def test_epochs_are_recorded_and_the_best_metric_kept(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    assert backend.log_epoch(run.id, "w", epoch(1, 0.4)) == Control.proceed
    assert backend.log_epoch(run.id, "w", epoch(2, 0.6)) == Control.proceed
    assert backend.log_epoch(run.id, "w", epoch(3, 0.5)) == Control.proceed
    stored = backend.get_run(run.id)
    assert [e["val_accuracy"] for e in stored.history] == [0.4, 0.6, 0.5]
    assert (stored.metric, stored.epochs, stored.state) == (0.6, 3, RunState.running)
    assert backend.heartbeat(run.id, "w") == Control.proceed


def test_finish_is_compare_and_set(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    backend.log_epoch(run.id, "w", epoch(1, 0.7))
    assert not backend.finish_run(run.id, "intruder", {"test_accuracy": 0.1})
    assert backend.finish_run(run.id, "w", {"test_accuracy": 0.65, "best_val_accuracy": 0.7})
    assert not backend.finish_run(run.id, "w", {"test_accuracy": 0.2})
    done = backend.get_run(run.id)
    assert (done.state, done.summary["test_accuracy"], done.metric) == (
        RunState.finished,
        0.65,
        0.7,
    )
    assert backend.log_epoch(run.id, "w", epoch(2, 0.9)) == Control.lost
    assert backend.heartbeat(run.id, "w") == Control.lost
    listed = {r.id: r for r in backend.list_runs(sweep.id)}
    assert listed[run.id].state == RunState.finished
    assert [e["val_accuracy"] for e in listed[run.id].history] == [0.7]


def test_stopped_runs_keep_their_reason(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    assert backend.finish_run(run.id, "w", {}, state=RunState.stopped, reason="early terminated")
    stopped = backend.get_run(run.id)
    assert (stopped.state, stopped.reason) == (RunState.stopped, "early terminated")


def test_a_failed_run_is_not_retried(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    assert backend.fail_run(run.id, "w", "ValueError: bad lr")
    failed = backend.get_run(run.id)
    assert (failed.state, failed.reason) == (RunState.failed, "ValueError: bad lr")
    assert not any(r.retry_of == run.id for r in backend.list_runs(sweep.id))
    assert not backend.fail_run(run.id, "w", "again")


def test_a_crashed_run_is_queued_again_then_failed(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    config = run.config
    for attempt in range(MAX_CRASH_RETRIES + 1):
        assert backend.fail_run(run.id, "w", "worker killed by SIGKILL", crashed=True)
        if attempt == MAX_CRASH_RETRIES:
            assert backend.get_run(run.id).state == RunState.failed
            break
        assert backend.get_run(run.id).state == RunState.crashed
        retry = backend.claim_run(sweep.id, "w").run
        assert retry is not None
        assert (retry.config, retry.attempt) == (config, attempt + 1)
        # Local: a new run. W&B: the same run, resumed under the id its controller issued.
        assert retry.retry_of == run.id or (backend.name, retry.id) == ("wandb", run.id)
        run = retry


def test_requeue_trains_the_same_run_again_from_the_start(
    backend: Backend, spec: SweepSpec
) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w1").run
    assert run is not None
    backend.log_epoch(run.id, "w1", epoch(1, 0.5))
    assert backend.requeue_run(run.id, "w1", "agent stopped (SIGTERM)")
    queued = backend.get_run(run.id)
    assert (queued.state, queued.worker, queued.metric, queued.epochs) == (
        RunState.pending,
        None,
        None,
        0,
    )
    again = backend.claim_run(sweep.id, "w2").run
    assert again is not None
    assert (again.id, again.worker, again.state) == (run.id, "w2", RunState.running)
    assert backend.log_epoch(run.id, "w1", epoch(1, 0.5)) == Control.lost


def test_a_silent_run_is_reaped_and_its_worker_told(
    backend: Backend, spec: SweepSpec, clock: FakeClock
) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w", lease_s=30).run
    assert run is not None
    clock.advance(29)
    assert backend.reap_stale() == []
    clock.advance(2)
    reaped = backend.reap_stale()
    assert [r.id for r in reaped] == [run.id]
    assert backend.get_run(run.id).state == RunState.crashed
    assert "no heartbeat" in (backend.get_run(run.id).reason or "")
    assert backend.reap_stale() == []
    assert backend.heartbeat(run.id, "w") == Control.lost
    assert not backend.finish_run(run.id, "w", {})


def test_pause_and_cancel_reach_running_workers(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    assert backend.set_sweep_state(sweep.id, SweepState.paused).state == SweepState.paused
    assert backend.heartbeat(run.id, "w") == Control.pause
    claim = backend.claim_run(sweep.id, "other")
    assert claim.run is None and claim.reason == "sweep paused"
    assert backend.set_sweep_state(sweep.id, SweepState.running).state == SweepState.running
    assert backend.heartbeat(run.id, "w") == Control.proceed
    assert backend.set_sweep_state(sweep.id, SweepState.canceled).state == SweepState.canceled
    assert backend.log_epoch(run.id, "w", epoch(1, 0.5)) == Control.cancel
    with pytest.raises(SweeperError, match="final"):
        backend.set_sweep_state(sweep.id, SweepState.running)
    assert backend.requeue_run(run.id, "w", "agent stopped")
    assert backend.get_run(run.id).state == RunState.stopped


def test_best_run_and_report_data(backend: Backend, spec: SweepSpec) -> None:
    sweep = backend.create_sweep(spec)
    scores = {}
    for value in (0.55, 0.8, 0.7):
        run = backend.claim_run(sweep.id, "w").run
        assert run is not None
        backend.log_epoch(run.id, "w", epoch(1, value - 0.1))
        backend.log_epoch(run.id, "w", epoch(2, value))
        backend.finish_run(run.id, "w", {"best_val_accuracy": value, "test_accuracy": value - 0.05})
        scores[run.id] = value
    best = backend.best_run(sweep.id)
    assert best is not None and best.id == max(scores, key=lambda k: scores[k])
    data = gather(backend, [sweep.id])
    assert [s.id for s in data.sweeps] == [sweep.id]
    by_id = {r.id: r for r in data.runs}
    assert set(by_id) == set(scores)
    for run_id, value in scores.items():
        assert by_id[run_id].metric == value
        assert [e["epoch"] for e in by_id[run_id].history] == [1, 2]
        assert by_id[run_id].summary["test_accuracy"] == pytest.approx(value - 0.05)
    counts = backend.get_sweep(sweep.id).run_counts
    assert counts == {"finished": 3}
