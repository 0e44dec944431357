"""The W&B backend beyond the shared contract, run end to end through wandb's own client:
retries through wandb's error wrapping, heartbeat outages, W&B's run protocol (issued run
ids, preemption, crash retries, one agent per worker, exit), several hosts, the store
migration, the CLI, and spec parity with W&B's schema. The server is the fake of
tests/sweeper/fake_wandb.py under wandb's transport, or a stand-in HTTP server on
127.0.0.1; nothing else touches the network."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sweeps
import yaml
from typer.testing import CliRunner

from sweeper import store as store_module
from sweeper.cli import app
from sweeper.errors import BackendError, NotFoundError, SpecError, SweeperError
from sweeper.locate import open_backend
from sweeper.models import Control, RunState, SweepState
from sweeper.paths import Home
from sweeper.spec import SweepSpec, load_spec, parse_spec
from sweeper.wandb.backend import WandbBackend
from sweeper.wandb.references import recorded
from sweeper.wandb.retry import Retry
from tests.specs import WANDB_GRID
from tests.standin_http import standin
from tests.sweeper.fake_wandb import KEY, FakeWandb, fresh_wandb_session, serve  # noqa: F401 - autouse fixture

from .conftest import FakeClock

ROOT = Path(__file__).resolve().parents[2]

HYPERBAND = """
name: hb
method: grid
metric: {name: val_accuracy, goal: maximize}
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
parameters:
  data_dir: {value: data/tiny}
  lr: {values: [0.1, 0.01, 0.001, 0.0001]}
"""


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWandb:
    return serve(monkeypatch, tmp_path)  # every host's wandb folder of the test


@pytest.fixture
def clock() -> FakeClock:
    """Monotonic seconds from 0, as the retry's deadlines count them."""
    return FakeClock(start=0.0)


def make(clock: FakeClock, home: Home | None = None, **kwargs: Any) -> WandbBackend:
    return WandbBackend(home or Home(), sleep=clock.sleep, clock=clock, **kwargs)


def spec_of(text: str) -> SweepSpec:
    return parse_spec(text, "t.yaml")


def test_no_credentials_is_a_clear_error_naming_both_ways_to_log_in() -> None:
    with pytest.raises(BackendError) as info:
        open_backend("wandb", Home())
    assert "wandb login" in str(info.value) and "WANDB_API_KEY" in str(info.value)


# --- faults, through wandb's own wrapping ------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "per_call"),
    [
        ("UpsertSweep", 429, 5),  # wandb.sweep, which tries 5 variants of its document
        ("CreateAgent", 503, 1),  # _register_agent
        ("Heartbeat", 429, 1),  # _agent_heartbeat, which would have swallowed it
        (("GetSweep", "GetSweepLegacy"), 500, 2),  # Api.sweep, which falls back to a legacy query
        ("Runs", 502, 1),  # Api.runs
    ],
)
def test_429_and_5xx_are_retried_through_wandbs_wrapping(
    fake: FakeWandb, clock: FakeClock, operation: str | tuple[str, ...], status: int, per_call: int
) -> None:
    backend = make(clock)
    fake.fail(status, times=2 * per_call, operation=operation)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    claim = backend.claim_run(sweep.id, "w")
    backend.list_runs(sweep.id)
    assert claim.run is not None
    names = (operation,) if isinstance(operation, str) else operation
    assert sum(fake.operations.count(name) for name in names) >= 2 * per_call + 1
    assert len(clock.slept) == 2 and clock.slept[1] > clock.slept[0] / 3


def test_a_heartbeat_outage_ends_in_a_clear_error_within_the_timeout(
    fake: FakeWandb, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_TIMEOUT", "20")
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    fake.fail(503, times=10_000, operation="Heartbeat")
    with pytest.raises(BackendError) as info:
        backend.heartbeat(run.id, "w")
    message = str(info.value)
    assert "did not answer for 20 s" in message and "heartbeat the agent" in message
    assert KEY not in message
    assert 0 < sum(clock.slept) <= 20


def test_a_refused_key_is_not_retried(fake: FakeWandb, clock: FakeClock) -> None:
    backend = make(clock)
    fake.fail(401, times=5, operation="UpsertSweep")  # all 5 variants wandb.sweep tries
    with pytest.raises(BackendError, match="wandb login") as info:
        backend.create_sweep(spec_of(WANDB_GRID))
    assert KEY not in str(info.value)
    assert clock.slept == []
    assert not recorded(backend.store)  # nothing half-created


@pytest.mark.slow
def test_cli_create_under_429_retries_for_the_timeout_then_says_rate_limited(
    tmp_path: Path,
) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(WANDB_GRID)
    with standin(429) as url:
        env = {
            **os.environ,
            "WANDB_BASE_URL": url,
            "WANDB_API_KEY": KEY,
            "SWEEPER_WANDB_TIMEOUT": "4",
            "PYTHONPATH": str(ROOT),
        }
        result = subprocess.run(
            [sys.executable, "-m", "sweeper", "create", str(spec_file), "--backend", "wandb"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert "rate-limited" in result.stderr and "HTTP 429" in result.stderr
    assert "for 4 s" in result.stderr and "SWEEPER_WANDB_TIMEOUT" in result.stderr
    assert "Traceback" not in result.stderr and KEY not in result.stdout + result.stderr
    assert not recorded(store_module.SQLiteStore(Home().store_path))


# --- W&B's run protocol -----------------------------------------------------------------


def test_a_preempted_run_is_handed_back_and_trains_once(
    fake: FakeWandb, clock: FakeClock, tmp_path: Path
) -> None:
    here = make(clock)
    sweep = here.create_sweep(spec_of(WANDB_GRID))
    run = here.claim_run(sweep.id, "w1").run
    assert run is not None
    here.log_epoch(run.id, "w1", {"epoch": 1, "val_accuracy": 0.5})
    assert here.requeue_run(run.id, "w1", "agent stopped (SIGTERM)")
    assert fake.uploaded()[run.id].state == "preempted"
    assert here.get_run(run.id).state == RunState.pending
    # W&B's controller hands it to whichever agent asks next: here, another host.
    there = make(clock, home=Home(tmp_path / "host2"))
    there.get_sweep(f"team/sweeper/{sweep.id}")
    resumed = there.claim_run(sweep.id, "h2").run
    assert resumed is not None and (resumed.id, resumed.config) == (run.id, run.config)
    # ... and never to this host as well.
    other = here.claim_run(sweep.id, "w1").run
    assert other is not None and other.id != run.id
    assert here.claim_run(sweep.id, "w2").done


def test_a_killed_workers_retry_trains_under_the_id_w_and_b_issued(
    fake: FakeWandb, clock: FakeClock
) -> None:
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    assert backend.fail_run(run.id, "w", "worker killed by SIGKILL", crashed=True)
    assert backend.get_run(run.id).state == RunState.crashed
    retry = backend.claim_run(sweep.id, "w").run
    assert retry is not None
    assert (retry.id, retry.config, retry.attempt) == (run.id, run.config, 1)
    assert set(fake.runs) == {run.id}  # no id the controller did not issue
    backend.log_epoch(retry.id, "w", {"epoch": 1, "val_accuracy": 0.4})
    backend.finish_run(retry.id, "w", {})
    states = [
        next(r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit")
        for records in fake.run_files()[run.id]
    ]
    assert states == [1, 0]  # handed back (preempting, exit 1), then finished


def test_each_worker_registers_one_agent_and_trains_only_its_runs(
    fake: FakeWandb, clock: FakeClock
) -> None:
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    first = backend.claim_run(sweep.id, "w1").run
    second = backend.claim_run(sweep.id, "w2").run
    assert first is not None and second is not None and first.id != second.id
    backend.finish_run(first.id, "w1", {})
    backend.claim_run(sweep.id, "w1")
    assert fake.operations.count("CreateAgent") == 2
    with backend.store.transaction() as conn:
        owners = dict(conn.execute("SELECT id, agent_id FROM wandb_runs").fetchall())
    assert owners[first.id] != owners[second.id]


def test_an_exit_command_during_a_run_stops_it(fake: FakeWandb, clock: FakeClock) -> None:
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    fake.sweeps[sweep.id].state = "FINISHED"
    assert backend.heartbeat(run.id, "w") == Control.stop
    assert backend.finish_run(run.id, "w", {}, state=RunState.stopped)
    assert "exit" in (backend.get_run(run.id).reason or "")
    assert backend.claim_run(sweep.id, "w").done


def test_hyperband_stop_commands_reach_the_worker(fake: FakeWandb, clock: FakeClock) -> None:
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(HYPERBAND))
    first = [backend.claim_run(sweep.id, f"w{i}").run for i in range(3)]
    for run, value in zip(first, (0.9, 0.8, 0.85), strict=True):
        assert run is not None
        backend.log_epoch(run.id, run.worker or "", {"epoch": 1, "val_accuracy": value})
        backend.log_epoch(run.id, run.worker or "", {"epoch": 2, "val_accuracy": value})
        backend.finish_run(run.id, run.worker or "", {})
    poor = backend.claim_run(sweep.id, "w9").run
    assert poor is not None
    # W&B sees a run's history when wandb-core has streamed it, not at once: epochs go on
    # until the controller's stop arrives, as in a real sweep.
    controls = []
    for e in range(1, 21):
        controls.append(backend.log_epoch(poor.id, "w9", {"epoch": e, "val_accuracy": 0.1}))
        if controls[-1] != Control.proceed:
            break
    assert controls[-1] == Control.stop
    assert "hyperband" in (backend.get_run(poor.id).reason or "")
    assert backend.finish_run(poor.id, "w9", {}, state=RunState.stopped)
    assert backend.get_run(poor.id).state == RunState.stopped


def test_two_hosts_share_a_sweep_without_sharing_a_run(
    fake: FakeWandb, clock: FakeClock, tmp_path: Path
) -> None:
    first = make(clock)
    sweep = first.create_sweep(spec_of(WANDB_GRID))
    assert (sweep.url or "").endswith(f"/team/sweeper/sweeps/{sweep.id}")
    other = make(clock, home=Home(tmp_path / "host2"))
    with pytest.raises(NotFoundError, match="entity/project/sweep_id"):
        other.get_sweep(sweep.id)
    joined = other.get_sweep(f"team/sweeper/{sweep.id}")
    assert (joined.id, joined.name) == (sweep.id, "grid")
    a = first.claim_run(sweep.id, "host1-w")
    b = other.claim_run(sweep.id, "host2-w")
    assert a.run is not None and b.run is not None and a.run.id != b.run.id
    other.log_epoch(b.run.id, "host2-w", {"epoch": 1, "val_accuracy": 0.7})
    other.finish_run(b.run.id, "host2-w", {"test_accuracy": 0.6})
    seen = {r.id: r for r in first.list_runs(sweep.id)}
    assert seen[b.run.id].state == RunState.finished
    assert seen[b.run.id].summary["test_accuracy"] == 0.6
    assert seen[b.run.id].metric == 0.7
    assert first.claim_run(sweep.id, "host1-x").done


def test_entity_and_project_come_from_options_then_wandb_env(
    fake: FakeWandb, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_ENTITY", "envteam")
    monkeypatch.setenv("WANDB_PROJECT", "envproj")
    from_env = make(clock).create_sweep(spec_of(WANDB_GRID))
    from_options = make(clock, entity="me", project="mine").create_sweep(spec_of(WANDB_GRID))
    assert "/envteam/envproj/" in (from_env.url or "")
    assert "/me/mine/" in (from_options.url or "")
    assert (fake.sweeps[from_options.id].entity, fake.sweeps[from_options.id].project) == (
        "me",
        "mine",
    )


def test_list_runs_is_cached_for_a_report_build(fake: FakeWandb, clock: FakeClock) -> None:
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    backend.list_runs(sweep.id)
    backend.list_runs(sweep.id)
    backend.best_run(sweep.id)
    assert fake.operations.count("Runs") == 2  # with and without history, once each


@pytest.mark.slow
def test_the_key_never_leaks_into_any_output(
    fake: FakeWandb,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SWEEPER_WANDB_TIMEOUT", "0.05")
    monkeypatch.setattr(Retry, "base_delay_s", 0.001)
    texts: list[str] = []
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    fake.fail(429, operation="Heartbeat")
    fake.fail(503, operation="Heartbeat")
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    fake.fail(401, operation="Heartbeat")
    with pytest.raises(BackendError) as info:
        backend.heartbeat(run.id, "w")
    texts.append(str(info.value))
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(WANDB_GRID)
    runner = CliRunner()
    results = [
        runner.invoke(app, ["create", str(spec_file), "--backend", "wandb", "--project", "p"]),
        runner.invoke(app, ["status", "--json"]),
        runner.invoke(app, ["ls"]),
        runner.invoke(app, ["report", sweep.id, "-o", str(tmp_path / "report")]),
    ]
    fake.fail(503, times=10_000)
    results.append(runner.invoke(app, ["status", sweep.id]))
    texts += [r.output for r in results]
    texts += [str(r.exception) for r in results if r.exception is not None]
    texts += [caplog.text, *capsys.readouterr()]
    texts += [p.read_text() for p in (tmp_path / "report").glob("*") if p.is_file()]
    texts += [p.read_text(errors="replace") for p in Home().root.rglob("*.log")]
    assert [r.exit_code for r in results] == [0, 0, 0, 0, 2], [r.output for r in results]
    assert any("W&B" in t for t in texts)
    for text in texts:
        assert KEY not in text


# --- the store migration ---------------------------------------------------------------


def test_a_version_1_store_gains_the_wandb_tables_and_keeps_its_sweeps() -> None:
    home = Home()
    local = open_backend("local", home)
    sweep = local.create_sweep(spec_of(WANDB_GRID))
    local.close()
    with sqlite3.connect(home.store_path) as conn:
        for table in ("wandb_sweeps", "wandb_runs", "wandb_agents", "wandb_synced"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    reopened = open_backend("local", home)
    assert reopened.get_sweep(sweep.id).name == "grid"
    assert reopened.store.schema_version == store_module.SCHEMA_VERSION
    with reopened.store.transaction() as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"wandb_sweeps", "wandb_runs", "wandb_agents", "wandb_synced"} <= tables


# --- the CLI ---------------------------------------------------------------------------


def test_cli_create_without_a_key_names_the_login(tmp_path: Path) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(WANDB_GRID)
    result = CliRunner().invoke(app, ["create", str(spec_file), "--backend", "wandb"])
    assert result.exit_code == 2
    assert "wandb login" in result.output and "WANDB_API_KEY" in result.output
    assert "Traceback" not in result.output


def test_cli_create_picks_w_and_b_with_a_key_and_the_commands_follow(
    fake: FakeWandb, tmp_path: Path
) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(WANDB_GRID)
    runner = CliRunner()
    created = runner.invoke(app, ["create", str(spec_file), "--entity", "me", "--project", "proj"])
    assert created.exit_code == 0, created.output
    said = " ".join(created.output.split())
    assert "wandb backend" in said and "W&B credentials are configured" in said
    assert "/me/proj/sweeps/" in created.output
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    assert {k: shown[k] for k in ("backend", "state")} == {"backend": "wandb", "state": "running"}
    paused = runner.invoke(app, ["pause"])
    assert paused.exit_code == 0 and "paused" in paused.output
    assert next(iter(fake.sweeps.values())).state == "PAUSED"
    listed = runner.invoke(app, ["ls", "--json"])
    assert [s["backend"] for s in json.loads(listed.output)] == ["wandb"]


def test_cli_entity_without_w_and_b_is_refused(tmp_path: Path) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(WANDB_GRID)
    result = CliRunner().invoke(app, ["create", str(spec_file), "--project", "p"])
    assert result.exit_code == 2 and "--backend wandb" in result.output


def test_cli_lists_local_and_w_and_b_sweeps_together(fake: FakeWandb, tmp_path: Path) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(WANDB_GRID)
    runner = CliRunner()
    assert runner.invoke(app, ["create", str(spec_file), "--backend", "local"]).exit_code == 0
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["ls", "--json"]).output)
    assert sorted(s["backend"] for s in listed) == ["local", "wandb"]
    assert all(set(s) == {"id", "name", "backend", "state", "runs"} for s in listed)


# --- spec parity with W&B's schema ---------------------------------------------------------

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"

#: Specs W&B's schema rejects; sweeper must reject them too (before anything is stored).
SCHEMA_ERRORS = {
    "unknown method": {"method": "genetic"},
    "metric without a name": {"metric": {"goal": "maximize"}},
    "bad goal": {"metric": {"name": "val_accuracy", "goal": "up"}},
    "unknown top-level key": {"epochs": 5},
    "bad distribution": {
        "parameters": {
            "data_dir": {"value": "d"},
            "lr": {"distribution": "lognormal-ish", "min": 0.1, "max": 1.0},
        }
    },
    "values not a list": {"parameters": {"data_dir": {"value": "d"}, "lr": {"values": 0.1}}},
    "empty values": {"parameters": {"data_dir": {"value": "d"}, "lr": {"values": []}}},
    "bad early_terminate": {"early_terminate": {"type": "median"}},
    "negative run_cap": {"run_cap": -1},
}


def _base() -> dict[str, Any]:
    return yaml.safe_load(WANDB_GRID)


@pytest.mark.parametrize("path", sorted(SWEEPS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_is_valid_for_w_and_b_too(path: Path) -> None:
    spec = load_spec(path)
    assert sweeps.schema_violations_from_proposed_config(spec.raw) == []


@pytest.mark.parametrize("change", SCHEMA_ERRORS.values(), ids=SCHEMA_ERRORS.keys())
def test_what_w_and_b_rejects_sweeper_rejects(change: dict[str, Any]) -> None:
    config = {**_base(), **change}
    assert sweeps.schema_violations_from_proposed_config(config) != []
    with pytest.raises(SpecError):
        parse_spec(yaml.safe_dump(config), "bad.yaml")


@pytest.mark.parametrize("change", SCHEMA_ERRORS.values(), ids=SCHEMA_ERRORS.keys())
def test_wandb_and_the_fake_server_reject_them_too(fake: FakeWandb, change: dict[str, Any]) -> None:
    from sweeper.wandb.client import RealClient

    with pytest.raises(Exception):  # noqa: B017 - wandb's own check, or the fake's 400
        RealClient(Home().wandb_dir, 5).create_sweep({**_base(), **change}, "team", "p")
    assert fake.sweeps == {}


def test_a_valid_spec_is_accepted_by_both() -> None:
    config = _base()
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert parse_spec(yaml.safe_dump(config)).method == "grid"


def test_unknown_backend_state_transitions_are_refused(fake: FakeWandb, clock: FakeClock) -> None:
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    backend.set_sweep_state(sweep.id, SweepState.finished)
    with pytest.raises(SweeperError, match="final"):
        backend.set_sweep_state(sweep.id, SweepState.paused)


@pytest.mark.parametrize(("setting", "uploaded"), [("1", 1), ("", 0)])
def test_checkpoints_are_artifacts_when_asked(
    fake: FakeWandb,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    uploaded: int,
) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_CHECKPOINTS", setting)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_text("weights")
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    backend.finish_run(run.id, "w", {"checkpoint_path": str(checkpoint)})
    (records,) = fake.run_files()[run.id]
    assert [r.WhichOneof("record_type") for r in records].count("artifact") == uploaded


def test_a_head_checkpoints_artifact_holds_its_backbone_file(
    fake: FakeWandb, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_CHECKPOINTS", "1")
    checkpoint, backbone = tmp_path / "best.pt", tmp_path / "weights" / "backbone.pt"
    backbone.parent.mkdir()
    checkpoint.write_text("head")
    backbone.write_text("backbone")
    backend = make(clock)
    sweep = backend.create_sweep(spec_of(WANDB_GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    summary = {"checkpoint_path": str(checkpoint), "checkpoint_base": str(backbone)}
    backend.finish_run(run.id, "w", summary)
    (records,) = fake.run_files()[run.id]
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert {entry.path for entry in artifact.manifest.contents} == {"best.pt", "backbone.pt"}


@pytest.mark.parametrize(("backend", "mirrored"), [("local", True), ("wandb", False)])
def test_workers_mirror_runs_to_wandb_only_for_the_local_backend(
    backend: str, mirrored: bool
) -> None:
    from agent.worker import Worker

    worker = Worker(Home(), backend, "trainer:train", "w1", heartbeat_s=1.0)
    assert worker.wandb.enabled is mirrored
