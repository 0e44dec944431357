"""The local backend on a real SQLite store: claims, caps, crashes, leases, controls, concurrency."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from sweeper import engine
from sweeper.backends import engine_view
from sweeper.backends.local import PROPOSE_TRIES, LocalBackend
from sweeper.errors import BackendError, NotFoundError, SweeperError
from sweeper.locate import open_backend
from sweeper.models import MAX_CRASH_RETRIES, Claim, Control, RunState, SweepState
from sweeper.paths import Home
from sweeper.spec import SweepSpec

from .conftest import SEEDS_PARAMETERS, FakeClock, MakeSpec, fake_accuracy

REPO = Path(__file__).resolve().parents[2]
GRID_6 = {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}


def claim_id(
    backend: LocalBackend, sweep_id: str, worker: str = "w1", lease_s: float = 60.0
) -> str:
    """Claim a run and return its id; fails the test when none is handed out."""
    claim = backend.claim_run(sweep_id, worker, lease_s=lease_s)
    assert claim.run is not None, claim.reason
    return claim.run.id


def test_create_sweep_stores_the_spec_and_makes_it_current(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(GRID_6, run_cap=4, name="grid-six")
    sweep = backend.create_sweep(spec)
    assert re.fullmatch(r"[a-z0-9]{8}", sweep.id)
    assert (sweep.name, sweep.backend, sweep.state) == ("grid-six", "local", SweepState.running)
    assert (sweep.method, sweep.metric_name, sweep.metric_goal, sweep.run_cap) == (
        "grid",
        "val_accuracy",
        "maximize",
        4,
    )
    assert sweep.spec == spec.raw and sweep.spec_path == "t.yaml"
    assert backend.store.get_current() == sweep.id
    assert backend.create_sweep(spec, name="other").name == "other"


def test_list_sweeps_newest_first_with_run_counts(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    first = backend.create_sweep(make_spec(GRID_6), name="first")
    second = backend.create_sweep(make_spec(GRID_6), name="second")
    run_id = claim_id(backend, first.id)
    claim_id(backend, first.id)
    backend.finish_run(run_id, "w1", {})
    listed = backend.list_sweeps()
    assert [s.id for s in listed] == [second.id, first.id]
    assert listed[1].run_counts == {"finished": 1, "running": 1}
    assert listed[0].run_counts == {}


def test_get_sweep_by_id_prefix_or_name(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6), name="head-bayes")
    assert backend.get_sweep(sweep.id).id == sweep.id
    assert backend.get_sweep(sweep.id[:3]).id == sweep.id
    assert backend.get_sweep("head-bayes").id == sweep.id


@pytest.mark.parametrize(
    ("ref", "message"), [("head-baye", 'did you mean "head-bayes"'), ("zz", "no sweep 'zz'")]
)
def test_unknown_sweep_is_not_found(
    backend: LocalBackend, make_spec: MakeSpec, ref: str, message: str
) -> None:
    backend.create_sweep(make_spec(GRID_6), name="head-bayes")
    with pytest.raises(NotFoundError, match=message):
        backend.get_sweep(ref)


def test_ambiguous_name_is_not_found(backend: LocalBackend, make_spec: MakeSpec) -> None:
    backend.create_sweep(make_spec(GRID_6), name="twin")
    backend.create_sweep(make_spec(GRID_6), name="twin")
    with pytest.raises(NotFoundError, match="matches 2 sweeps"):
        backend.get_sweep("twin")


def test_grid_exhaustion_finishes_the_sweep(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    configs = []
    for _ in range(6):
        run_id = claim_id(backend, sweep.id)
        configs.append(backend.get_run(run_id).config)
        backend.finish_run(run_id, "w1", {})
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 6
    claim = backend.claim_run(sweep.id, "w1")
    assert (claim.run, claim.done, claim.reason) == (
        None,
        True,
        "grid exhausted: all 6 configs ran",
    )
    assert backend.get_sweep(sweep.id).state == SweepState.finished
    # Later claims say why the sweep finished.
    assert backend.claim_run(sweep.id, "w2").reason == "grid exhausted: all 6 configs ran"


def test_exhausted_sweep_finishes_when_its_last_run_ends(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    sweep = backend.create_sweep(make_spec({"a": {"values": [1]}}))
    run_id = claim_id(backend, sweep.id, "w1")
    claim = backend.claim_run(sweep.id, "w2")
    # Not done: w1 still trains, and should it die its run comes back for w2 to take.
    assert (claim.run, claim.done, claim.reason) == (
        None,
        False,
        "grid exhausted: all 1 configs ran",
    )
    assert backend.get_sweep(sweep.id).state == SweepState.running
    assert backend.finish_run(run_id, "w1", {})
    assert backend.get_sweep(sweep.id).state == SweepState.finished
    claim = backend.claim_run(sweep.id, "w2")
    assert (claim.run, claim.done, claim.reason) == (
        None,
        True,
        "grid exhausted: all 1 configs ran",
    )


def test_a_dead_agents_last_run_is_retried_by_an_agent_told_to_wait(
    backend: LocalBackend, make_spec: MakeSpec, clock: FakeClock
) -> None:
    sweep = backend.create_sweep(make_spec({"a": {"values": [1, 2]}}))
    dead = claim_id(backend, sweep.id, "dead", lease_s=30)
    alive = claim_id(backend, sweep.id, "alive", lease_s=30)
    assert backend.finish_run(alive, "alive", {})
    # The grid is exhausted, but the dead agent's run is still within its lease.
    waiting = backend.claim_run(sweep.id, "alive", lease_s=30)
    assert (waiting.run, waiting.done) == (None, False)
    clock.advance(31)
    retry = backend.claim_run(sweep.id, "alive", lease_s=30)
    assert retry.run is not None
    assert (retry.run.retry_of, retry.run.config) == (dead, backend.get_run(dead).config)
    assert backend.get_run(dead).state == RunState.crashed
    assert backend.finish_run(retry.run.id, "alive", {})
    claim = backend.claim_run(sweep.id, "alive")
    assert (claim.done, claim.reason) == (True, "grid exhausted: all 2 configs ran")
    assert backend.get_sweep(sweep.id).state == SweepState.finished


@pytest.mark.slow
def test_seeds_space_gives_22_distinct_configs_then_run_cap(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    sweep = backend.create_sweep(make_spec(SEEDS_PARAMETERS, method="bayes", run_cap=22))
    configs = []
    for _ in range(22):
        run_id = claim_id(backend, sweep.id)
        config = backend.get_run(run_id).config
        configs.append(json.dumps(config, sort_keys=True))
        assert (
            backend.log_epoch(run_id, "w1", {"epoch": 1, "val_accuracy": fake_accuracy(config)})
            == Control.proceed
        )
        assert backend.finish_run(run_id, "w1", {"best_val_accuracy": fake_accuracy(config)})
    assert len(set(configs)) == 22
    claim = backend.claim_run(sweep.id, "w1")
    assert (claim.done, claim.reason) == (True, "run_cap 22 reached")
    assert backend.get_sweep(sweep.id).state == SweepState.finished
    best = backend.best_run(sweep.id)
    assert best is not None and best.metric == max(fake_accuracy(json.loads(c)) for c in configs)


def test_run_cap_counts_first_tries_only(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(
        make_spec({"lr": {"min": 0.001, "max": 0.1}}, method="random", run_cap=2)
    )
    crashed = claim_id(backend, sweep.id)
    backend.fail_run(crashed, "w1", "killed", crashed=True)
    retry = claim_id(backend, sweep.id)
    second = claim_id(backend, sweep.id)
    assert backend.get_run(retry).retry_of == crashed
    assert backend.get_run(second).retry_of is None
    claim = backend.claim_run(sweep.id, "w1")
    assert (claim.done, claim.reason) == (False, "run_cap 2 reached")  # two runs still train
    assert backend.get_sweep(sweep.id).state == SweepState.running


def test_crash_is_retried_twice_then_failed(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id)
    config = backend.get_run(run_id).config
    chain = [run_id]
    for attempt in range(1, MAX_CRASH_RETRIES + 1):
        assert backend.fail_run(chain[-1], "w1", "worker died (signal 9)", crashed=True)
        retry_id = claim_id(backend, sweep.id)
        retry = backend.get_run(retry_id)
        assert (retry.attempt, retry.retry_of, retry.config) == (attempt, chain[-1], config)
        chain.append(retry_id)
    assert backend.fail_run(chain[-1], "w1", "worker died (signal 9)", crashed=True)
    states = [backend.get_run(r).state for r in chain]
    assert states == [RunState.crashed] * MAX_CRASH_RETRIES + [RunState.failed]
    assert "crashed 3 times" in (backend.get_run(chain[-1]).reason or "")
    # The next claim is a new config, not a fourth try.
    fresh = backend.get_run(claim_id(backend, sweep.id))
    assert fresh.attempt == 0 and fresh.config != config


def test_plain_failure_is_not_retried(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id)
    assert backend.fail_run(run_id, "w1", "CUDA out of memory: lower batch_size")
    run = backend.get_run(run_id)
    assert (run.state, run.reason) == (RunState.failed, "CUDA out of memory: lower batch_size")
    assert backend.list_runs(sweep.id)[-1].id == run_id


@pytest.mark.parametrize("method", ["grid", "random"])
def test_a_lease_starts_when_the_run_is_handed_out_not_before_the_proposal(
    backend: LocalBackend,
    make_spec: MakeSpec,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    # The engine's first import or a bayes fit can take longer than a short lease.
    propose = engine.propose

    def slow_propose(*args: Any, **kwargs: Any) -> Any:
        clock.advance(5)
        return propose(*args, **kwargs)

    monkeypatch.setattr(engine, "propose", slow_propose)
    sweep = backend.create_sweep(make_spec(GRID_6, method=method))
    run = backend.claim_run(sweep.id, "w1", lease_s=1).run
    assert run is not None and run.heartbeat_at is not None
    assert run.heartbeat_at.timestamp() == pytest.approx(clock())
    assert backend.reap_stale() == []


def test_reap_stale_crashes_and_requeues_a_silent_run(
    backend: LocalBackend, make_spec: MakeSpec, clock: FakeClock
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    alive = claim_id(backend, sweep.id, "alive", lease_s=600)
    stale = claim_id(backend, sweep.id, "dead", lease_s=30)
    clock.advance(31)
    reaped = backend.reap_stale()
    assert [r.id for r in reaped] == [stale]
    assert reaped[0].state == RunState.crashed and "no heartbeat from worker dead" in (
        reaped[0].reason or ""
    )
    assert backend.reap_stale() == []
    assert backend.get_run(alive).state == RunState.running
    # The dead worker learns it lost the run and cannot end it any more.
    assert backend.heartbeat(stale, "dead") == Control.lost
    assert backend.log_epoch(stale, "dead", {"epoch": 1, "val_accuracy": 0.9}) == Control.lost
    assert backend.get_run(stale).epochs == 0
    assert not backend.finish_run(stale, "dead", {})
    retry = backend.get_run(claim_id(backend, sweep.id, "new"))
    assert (retry.retry_of, retry.attempt, retry.worker) == (stale, 1, "new")


def test_claim_reaps_before_handing_out(
    backend: LocalBackend, make_spec: MakeSpec, clock: FakeClock
) -> None:
    sweep = backend.create_sweep(make_spec({"a": {"values": [1]}}))
    stale = claim_id(backend, sweep.id, "dead", lease_s=30)
    clock.advance(29)
    # Within the lease the run is left alone, and the one-config space has nothing else.
    assert backend.claim_run(sweep.id, "early").run is None
    assert backend.get_run(stale).state == RunState.running
    clock.advance(2)
    retry = backend.get_run(claim_id(backend, sweep.id, "new"))
    assert retry.retry_of == stale and backend.get_run(stale).state == RunState.crashed


def test_heartbeat_keeps_a_run_alive(
    backend: LocalBackend, make_spec: MakeSpec, clock: FakeClock
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id, lease_s=30)
    before = backend.get_run(run_id).heartbeat_at
    clock.advance(20)
    assert backend.heartbeat(run_id, "w1") == Control.proceed
    clock.advance(20)
    assert backend.reap_stale() == []
    after = backend.get_run(run_id).heartbeat_at
    assert before is not None and after is not None and (after - before).total_seconds() == 20


def test_requeue_clears_metrics_and_is_claimed_again(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id)
    backend.log_epoch(run_id, "w1", {"epoch": 1, "val_accuracy": 0.4})
    assert not backend.requeue_run(run_id, "someone-else", "SIGTERM")
    assert backend.requeue_run(run_id, "w1", "SIGTERM")
    run = backend.get_run(run_id)
    assert (run.state, run.epochs, run.metric, run.history, run.worker, run.reason) == (
        RunState.pending,
        0,
        None,
        [],
        None,
        "SIGTERM",
    )
    assert not backend.requeue_run(run_id, "w1", "again")
    again = backend.claim_run(sweep.id, "w2").run
    assert again is not None and (again.id, again.worker, again.reason) == (run_id, "w2", None)


def test_best_metric_is_the_best_epoch_not_the_last(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id)
    for epoch, acc in enumerate([0.5, 0.8, 0.6, float("nan")], start=1):
        backend.log_epoch(
            run_id, "w1", {"epoch": epoch, "val_accuracy": acc, "val_loss": 1.0 / epoch}
        )
    run = backend.get_run(run_id)
    assert (run.metric, run.epochs) == (0.8, 4)
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    assert backend.finish_run(run_id, "w1", {"best_val_accuracy": 0.8, "test_accuracy": 0.7})
    finished = backend.get_run(run_id)
    assert (finished.state, finished.metric, finished.summary["test_accuracy"]) == (
        RunState.finished,
        0.8,
        0.7,
    )


@pytest.mark.parametrize(
    ("summary", "metric"),
    [({"val_accuracy": 0.8, "val_loss": 0.1}, 0.8), ({"val_loss": 0.1}, 0.6)],
    ids=["script-set-summary", "last-logged"],
)
def test_a_program_runs_metric_is_its_summary_value_as_wandb_has_it(
    backend: LocalBackend, make_spec: MakeSpec, summary: dict[str, Any], metric: float
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6, kind="program"))
    run_id = claim_id(backend, sweep.id)
    for step, acc in enumerate([0.5, 0.8, 0.6], start=1):
        backend.log_epoch(run_id, "w1", {"epoch": step, "val_accuracy": acc})
        assert backend.get_run(run_id).metric == acc
    backend.log_epoch(run_id, "w1", {"epoch": 4, "val_loss": 0.1})
    assert backend.get_run(run_id).metric == 0.6
    with backend.store.transaction() as conn:
        (stored,) = engine_view.engine_runs(conn, sweep.id, history=True)
    spec = make_spec(GRID_6, kind="program")
    assert engine.to_sweep_run(stored, spec).summary_metrics == {"val_accuracy": 0.6}
    assert backend.finish_run(run_id, "w1", summary)
    assert backend.get_run(run_id).metric == metric


@pytest.mark.parametrize("kind", ["trainer", "program"])
def test_a_sweep_tells_its_stored_kind(
    backend: LocalBackend, make_spec: MakeSpec, kind: Literal["trainer", "program"]
) -> None:
    # A function sweep's spec names no program: only the stored kind says what it is.
    sweep = backend.create_sweep(make_spec(GRID_6, kind=kind))
    assert "program" not in sweep.spec
    assert backend.get_sweep(sweep.id).kind == kind
    assert [s.kind for s in backend.list_sweeps()] == [kind]


@pytest.mark.parametrize("method", ["grid", "random"])
def test_a_sweep_without_a_metric_runs_its_space(
    backend: LocalBackend, make_spec: MakeSpec, method: Literal["grid", "random"]
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6, method=method, metric=False))
    assert backend.get_sweep(sweep.id).metric_name is None
    for _ in range(6):
        run_id = claim_id(backend, sweep.id)
        assert backend.log_epoch(run_id, "w1", {"epoch": 1, "loss": 0.3}) == Control.proceed
        assert backend.finish_run(run_id, "w1", {"loss": 0.3})
    claim = backend.claim_run(sweep.id, "w1")
    assert (claim.run, claim.done) == (None, True)
    runs = backend.list_runs(sweep.id)
    assert len({json.dumps(r.config, sort_keys=True) for r in runs}) == 6
    assert {(r.state, r.metric) for r in runs} == {(RunState.finished, None)}
    assert backend.best_run(sweep.id) is None


def test_finish_is_compare_and_set(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id)
    assert not backend.finish_run(run_id, "intruder", {})
    assert not backend.fail_run(run_id, "intruder", "x")
    assert backend.finish_run(run_id, "w1", {})
    assert not backend.finish_run(run_id, "w1", {})
    assert not backend.fail_run(run_id, "w1", "late", crashed=True)
    assert backend.get_run(run_id).state == RunState.finished


def test_pause_and_resume(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    run_id = claim_id(backend, sweep.id)
    backend.set_sweep_state(sweep.id, SweepState.paused)
    assert backend.log_epoch(run_id, "w1", {"epoch": 1, "val_accuracy": 0.5}) == Control.pause
    assert backend.heartbeat(run_id, "w1") == Control.pause
    claim = backend.claim_run(sweep.id, "w2")
    assert (claim.run, claim.done, claim.reason) == (None, True, "sweep paused")
    assert backend.requeue_run(run_id, "w1", "sweep paused")
    backend.set_sweep_state(sweep.id, SweepState.running)
    again = backend.claim_run(sweep.id, "w2").run
    assert again is not None and again.id == run_id
    assert backend.heartbeat(run_id, "w2") == Control.proceed


def test_cancel_stops_pending_runs_and_tells_running_ones(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    running = claim_id(backend, sweep.id, "w1")
    queued = claim_id(backend, sweep.id, "w2")
    backend.requeue_run(queued, "w2", "SIGTERM")
    backend.set_sweep_state(sweep.id, SweepState.canceled)
    pending = backend.get_run(queued)
    assert (pending.state, pending.reason) == (RunState.stopped, "sweep canceled")
    assert backend.log_epoch(running, "w1", {"epoch": 1, "val_accuracy": 0.5}) == Control.cancel
    assert backend.claim_run(sweep.id, "w3").reason == "sweep canceled"
    assert backend.finish_run(running, "w1", {}, state=RunState.stopped, reason="sweep canceled")
    assert backend.get_sweep(sweep.id).run_counts == {"stopped": 2}


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ([SweepState.paused, SweepState.running, SweepState.finished], True),
        ([SweepState.paused, SweepState.canceled], True),
        ([SweepState.paused, SweepState.paused], True),
        ([SweepState.canceled, SweepState.running], False),
        ([SweepState.finished, SweepState.paused], False),
        ([SweepState.canceled, SweepState.finished], False),
    ],
)
def test_sweep_state_transitions(
    backend: LocalBackend, make_spec: MakeSpec, path: list[SweepState], allowed: bool
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    for state in path[:-1]:
        backend.set_sweep_state(sweep.id, state)
    if allowed:
        assert backend.set_sweep_state(sweep.id, path[-1]).state == path[-1]
    else:
        with pytest.raises(SweeperError, match="final"):
            backend.set_sweep_state(sweep.id, path[-1])
        assert backend.get_sweep(sweep.id).state == path[-2]


def test_hyperband_stops_a_weak_run_with_its_reason(
    backend: LocalBackend, make_spec: MakeSpec
) -> None:
    spec = make_spec(GRID_6, early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2})
    sweep = backend.create_sweep(spec)
    for acc in (0.8, 0.7):
        run_id = claim_id(backend, sweep.id)
        assert backend.log_epoch(run_id, "w1", {"epoch": 1, "val_accuracy": acc}) == Control.proceed
        backend.finish_run(run_id, "w1", {})
    weak = claim_id(backend, sweep.id)
    assert backend.log_epoch(weak, "w1", {"epoch": 1, "val_accuracy": 0.3}) == Control.stop
    assert backend.finish_run(weak, "w1", {"stopped_early": True}, state=RunState.stopped)
    run = backend.get_run(weak)
    assert (run.state, run.reason) == (
        RunState.stopped,
        "hyperband: below the 0.7 cut at epoch 1, band 1",
    )


def test_missing_run_is_not_found(backend: LocalBackend, make_spec: MakeSpec) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    with pytest.raises(NotFoundError, match="no run with id 'nope1234'"):
        backend.get_run("nope1234")
    with pytest.raises(NotFoundError):
        backend.claim_run("nope1234", "w1")
    assert backend.list_runs(sweep.id) == []


@pytest.mark.parametrize(
    ("name", "message"), [("wandb", "wandb login"), ("lokal", 'did you mean "local"')]
)
def test_open_backend_refuses_unavailable_names(name: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        open_backend(name)


def test_open_backend_local_uses_the_home(tmp_path: Path) -> None:
    home = Home(tmp_path / "elsewhere")
    backend = open_backend("local", home)
    assert isinstance(backend, LocalBackend) and backend.store.path == home.store_path


def patch_propose(
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[], object] | None = None,
    stale_for: int = 0,
) -> list[bool]:
    """Wrap `engine.propose`: the first call runs `meanwhile` before proposing (as another
    process would between the claim's read and its insert), the first `stale_for` calls
    see no runs at all. Returns, per call, whether the store's write lock was held."""
    real = engine.propose
    locked: list[bool] = []

    def propose(
        spec: SweepSpec, runs: Sequence[engine.EngineRun]
    ) -> engine.Proposal | engine.Exhausted:
        locked.append(write_locked(Home().store_path))
        if len(locked) == 1 and meanwhile is not None:
            meanwhile()
        return real(spec, [] if len(locked) <= stale_for else runs)

    monkeypatch.setattr(engine, "propose", propose)
    return locked


def write_locked(path: Path) -> bool:
    """Whether some connection holds the store's write lock (SQLite's in-process locks
    keep this connection's close from dropping the others')."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


def test_a_config_taken_while_proposing_is_not_handed_out_again(
    backend: LocalBackend, make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = backend.create_sweep(make_spec({"a": {"values": [1, 2]}}, method="random"))
    first = backend.get_run(claim_id(backend, sweep.id, "w0")).config
    other = LocalBackend(backend.home)
    taken: list[Claim] = []
    # Our proposal is the one config left, and the other claim takes it meanwhile.
    locked = patch_propose(monkeypatch, lambda: taken.append(other.claim_run(sweep.id, "w2")))
    claim = backend.claim_run(sweep.id, "w1")
    assert taken[0].run is not None and taken[0].run.config != first
    # Not done while the other claim's run trains.
    assert (claim.run, claim.done, claim.reason) == (
        None,
        False,
        "search space exhausted: all 2 configs ran",
    )
    # Ours, the other claim's, ours again on fresh runs: none under the write lock.
    assert locked == [False, False, False]
    assert len(backend.list_runs(sweep.id)) == 2


@pytest.mark.parametrize(
    ("run_cap", "meanwhile", "reason"),
    [
        # Not done: the other claim's run trains (and could come back).
        (
            1,
            lambda other, sweep_id, run_id: other.claim_run(sweep_id, "w2"),
            (False, "run_cap 1 reached"),
        ),
        (
            None,
            lambda other, sweep_id, run_id: other.set_sweep_state(sweep_id, SweepState.paused),
            (True, "sweep paused"),
        ),
        (None, lambda other, sweep_id, run_id: other.requeue_run(run_id, "w0", "SIGTERM"), None),
    ],
    ids=["capped", "paused", "requeued"],
)
def test_a_claim_rechecks_the_sweep_before_inserting_its_proposal(
    backend: LocalBackend,
    make_spec: MakeSpec,
    monkeypatch: pytest.MonkeyPatch,
    run_cap: int | None,
    meanwhile: Callable[[LocalBackend, str, str], object],
    reason: tuple[bool, str] | None,
) -> None:
    sweep = backend.create_sweep(
        make_spec({"lr": {"min": 0.001, "max": 0.1}}, method="random", run_cap=run_cap)
    )
    first = "" if run_cap else claim_id(backend, sweep.id, "w0")
    other = LocalBackend(backend.home)
    patch_propose(monkeypatch, lambda: meanwhile(other, sweep.id, first))
    claim = backend.claim_run(sweep.id, "w1")
    if reason is None:  # the re-queued run goes first, the proposal is dropped
        assert claim.run is not None and (claim.run.id, claim.run.worker) == (first, "w1")
    else:
        assert (claim.run, claim.done, claim.reason) == (None, *reason)
    assert len(backend.list_runs(sweep.id)) == 1


def test_a_claim_that_keeps_losing_proposes_under_the_lock(
    backend: LocalBackend, make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = backend.create_sweep(make_spec({"a": {"values": [1]}}, method="random"))
    claim_id(backend, sweep.id, "w0")
    # Blind to the runs, the engine proposes the used a=1 every time.
    locked = patch_propose(monkeypatch, stale_for=PROPOSE_TRIES)
    claim = backend.claim_run(sweep.id, "w1")
    assert (claim.run, claim.reason) == (None, "search space exhausted: all 1 configs ran")
    assert locked == [False] * PROPOSE_TRIES + [True]


def test_grid_search_proposes_under_the_lock(
    backend: LocalBackend, make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = backend.create_sweep(make_spec(GRID_6))
    locked = patch_propose(monkeypatch)
    claim_id(backend, sweep.id)
    assert locked == [True]


_CLAIMER = """
import sys
from sweeper.backends.local import LocalBackend
from sweeper.paths import Home

backend = LocalBackend(Home(sys.argv[1], store=sys.argv[4] if len(sys.argv) > 4 else None))
worker = sys.argv[3]
while True:
    claim = backend.claim_run(sys.argv[2], worker)
    if claim.run is None:
        break
    backend.log_epoch(claim.run.id, worker, {"epoch": 1, "val_accuracy": 0.5})
    assert backend.finish_run(claim.run.id, worker, {"worker": worker})
"""


@pytest.mark.slow
def test_eight_processes_share_one_store_without_duplicates(
    backend: LocalBackend, make_spec: MakeSpec, isolated_env: Path
) -> None:
    parameters = {"a": {"values": list(range(10))}, "b": {"values": ["p", "q", "r", "s", "t", "u"]}}
    sweep = backend.create_sweep(make_spec(parameters))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(isolated_env), sweep.id, f"w{i}"], env=env
        )
        for i in range(8)
    ]
    assert [p.wait(timeout=600) for p in workers] == [0] * 8
    runs = backend.list_runs(sweep.id)
    configs = {json.dumps(r.config, sort_keys=True) for r in runs}
    assert len(runs) == 60 and len(configs) == 60
    assert all(r.state == RunState.finished and r.summary == {"worker": r.worker} for r in runs)
    assert all(r.epochs == 1 for r in runs)
    assert backend.get_sweep(sweep.id).state == SweepState.finished


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_eight_processes_claim_a_capped_random_sweep_exactly(
    backend: LocalBackend,
    make_spec: MakeSpec,
    isolated_env: Path,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    """Random search on a continuous space: after each process's first claim, a claim is
    one guarded insert in one write batch; under contention the cap still holds exactly,
    no run is handed out twice and the sweep finishes."""
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    shared = LocalBackend(Home(isolated_env, store=url)) if url else backend
    spec = make_spec({"lr": {"min": 0.0, "max": 1.0}}, method="random", run_cap=120)
    sweep = shared.create_sweep(spec)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _CLAIMER, str(isolated_env), sweep.id]
    workers = [
        subprocess.Popen([*args, f"w{i}", *([url] if url else [])], env=env) for i in range(8)
    ]
    assert [p.wait(timeout=600) for p in workers] == [0] * 8
    runs = shared.list_runs(sweep.id)
    assert len(runs) == len({r.id for r in runs}) == len({r.config["lr"] for r in runs}) == 120
    assert all(r.state == RunState.finished and r.summary == {"worker": r.worker} for r in runs)
    assert len({r.worker for r in runs}) > 1
    assert shared.get_sweep(sweep.id).state == SweepState.finished
    shared.close()
