"""The W&B backend beyond the shared contract: key selection, retries, redaction, W&B's
controller commands, several hosts, the store migration, the CLI, and spec parity with
W&B's schema. The server is tests/sweeper/fake_wandb.py; nothing touches the network."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sweeps
import yaml
from typer.testing import CliRunner

from sweeper import store as store_module
from sweeper.backends import open_backend
from sweeper.backends import wandb as wandb_backend
from sweeper.backends.wandb import (
    RunRecord,
    WandbBackend,
    _history,
    _run_state,
    api_key,
    recorded,
)
from sweeper.cli import app
from sweeper.errors import BackendError, NotFoundError, SpecError, SweeperError
from sweeper.models import Control, RunState, SweepState
from sweeper.paths import Home
from sweeper.spec import SweepSpec, load_spec, parse_spec
from sweeper.wandb_sync import read_run_record
from tests.sweeper.fake_wandb import FakeHTTPError, FakeWandb, http_error

KEY = "k" * 24 + "SECRETKEY" + "7" * 7  # 40 characters, like a W&B key

GRID = """
name: grid
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  data_dir: {value: data/tiny}
  lr: {values: [0.001, 0.0001]}
"""

HYPERBAND = """
name: hb
method: grid
metric: {name: val_accuracy, goal: maximize}
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
parameters:
  data_dir: {value: data/tiny}
  lr: {values: [0.1, 0.01, 0.001, 0.0001]}
"""


class Clock:
    """A monotonic clock that only moves when the backend sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeWandb:
    return FakeWandb(entity="team")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    return KEY


def make(fake: FakeWandb, clock: Clock, home: Home | None = None, **kwargs: Any) -> WandbBackend:
    return WandbBackend(home or Home(), client=fake, sleep=clock.sleep, clock=clock, **kwargs)


def spec_of(text: str) -> SweepSpec:
    return parse_spec(text, "t.yaml")


# --- selection and credentials ---------------------------------------------------------


def test_no_key_is_a_clear_error_naming_both_ways_to_log_in() -> None:
    with pytest.raises(BackendError) as info:
        open_backend("wandb", Home())
    assert "wandb login" in str(info.value) and "WANDB_API_KEY" in str(info.value)


@pytest.mark.parametrize(
    ("base_url", "machine", "found"),
    [
        (None, "api.wandb.ai", True),
        (None, "example.com", False),
        ("https://wandb.example.com", "wandb.example.com", True),
        ("https://wandb.example.com", "api.wandb.ai", False),
    ],
)
def test_netrc_key_is_read_for_the_configured_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str | None, machine: str, found: bool
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {machine}\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    assert api_key() == (KEY if found else None)


@pytest.mark.parametrize(
    ("value", "ok"), [("0.5", True), ("abc", False), ("-1", False), ("nan", False)]
)
def test_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch, value: str, ok: bool) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_TIMEOUT", value)
    if ok:
        assert wandb_backend.timeout_s() == 0.5
    else:
        with pytest.raises(SweeperError, match="SWEEPER_WANDB_TIMEOUT"):
            wandb_backend.timeout_s()


# --- network faults --------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_errors_are_retried_with_backoff(
    fake: FakeWandb, clock: Clock, keyed: str, status: int
) -> None:
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    fake.fail(
        "agent_heartbeat", http_error(status), http_error(status), TimeoutError("read timed out")
    )
    claim = backend.claim_run(sweep.id, "w")
    assert claim.run is not None
    assert fake.calls.count("agent_heartbeat") == 4
    assert len(clock.slept) == 3
    assert clock.slept[2] > clock.slept[0]  # the backoff grows


def test_an_unreachable_server_ends_in_a_clear_error_within_the_timeout(
    fake: FakeWandb, clock: Clock, keyed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_TIMEOUT", "20")
    backend = make(fake, clock)
    fake.unreachable = True
    with pytest.raises(BackendError) as info:
        backend.create_sweep(spec_of(GRID))
    message = str(info.value)
    assert "did not answer" in message and "20 s" in message and "SWEEPER_WANDB_TIMEOUT" in message
    assert KEY not in message
    assert sum(clock.slept) <= 20
    assert len(fake.calls) > 3
    assert not recorded(backend.store)  # nothing half-created


def test_the_default_timeout_is_60_seconds(fake: FakeWandb, clock: Clock, keyed: str) -> None:
    backend = make(fake, clock)
    fake.unreachable = True
    with pytest.raises(BackendError, match="within 60 s"):
        backend.list_sweeps() or backend.get_sweep("a/b/c")
    assert sum(clock.slept) <= 60


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, BackendError, "refused the API key"),
        (403, BackendError, "wandb login"),
        (404, NotFoundError, "does not know"),
    ],
)
def test_permanent_errors_are_not_retried(
    fake: FakeWandb, clock: Clock, keyed: str, status: int, error: type[Exception], words: str
) -> None:
    backend = make(fake, clock)
    fake.fail("create_sweep", http_error(status))
    with pytest.raises(error, match=words) as info:
        backend.create_sweep(spec_of(GRID))
    assert KEY not in str(info.value)
    assert clock.slept == []


def test_the_key_never_leaks_into_any_output(
    fake: FakeWandb,
    clock: Clock,
    keyed: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(wandb_backend, "RealClient", lambda wandb_dir, timeout: fake)
    monkeypatch.setattr(wandb_backend._Retry, "base_delay_s", 0.001)
    monkeypatch.setenv("SWEEPER_WANDB_TIMEOUT", "0.05")
    texts: list[str] = []
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    fake.fail("agent_heartbeat", http_error(429), http_error(503))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    fake.fail("log_epoch", http_error(401))
    with pytest.raises(BackendError) as info:
        backend.log_epoch(run.id, "w", {"epoch": 1, "val_accuracy": 0.5})
    texts.append(str(info.value))
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(GRID)
    runner = CliRunner()
    results = [
        runner.invoke(app, ["create", str(spec_file), "--backend", "wandb", "--project", "p"]),
        runner.invoke(app, ["status", "--json"]),
        runner.invoke(app, ["ls"]),
        runner.invoke(app, ["report", sweep.id, "-o", str(tmp_path / "report")]),
    ]
    fake.unreachable = True
    results.append(runner.invoke(app, ["status", sweep.id]))
    assert results[0].exit_code == 0, results[0].output
    assert results[-1].exit_code == 2
    texts += [r.output for r in results]
    texts += [str(r.exception) for r in results if r.exception is not None]
    texts += [caplog.text, *capsys.readouterr()]
    texts += [p.read_text() for p in (tmp_path / "report").glob("*") if p.is_file()]
    texts += [p.read_text(errors="replace") for p in Home().root.rglob("*.log")]
    assert [r.exit_code for r in results] == [0, 0, 0, 0, 2], [r.output for r in results]
    assert any("W&B" in t for t in texts)
    for text in texts:
        assert KEY not in text


# --- W&B's controller ----------------------------------------------------------------


def test_hyperband_stop_commands_reach_the_worker(
    fake: FakeWandb, clock: Clock, keyed: str
) -> None:
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(HYPERBAND))
    first = [backend.claim_run(sweep.id, f"w{i}").run for i in range(3)]
    assert all(r is not None for r in first)
    for run, value in zip(first, (0.9, 0.8, 0.85), strict=True):
        assert run is not None
        backend.log_epoch(run.id, run.worker or "", {"epoch": 1, "val_accuracy": value})
        backend.log_epoch(run.id, run.worker or "", {"epoch": 2, "val_accuracy": value})
        backend.finish_run(run.id, run.worker or "", {})
    poor = backend.claim_run(sweep.id, "w9").run
    assert poor is not None
    controls = [backend.log_epoch(poor.id, "w9", {"epoch": e, "val_accuracy": 0.1}) for e in (1, 2)]
    assert Control.stop in controls
    assert "hyperband" in (backend.get_run(poor.id).reason or "")
    assert backend.finish_run(poor.id, "w9", {}, state=RunState.stopped)
    assert backend.get_run(poor.id).state == RunState.stopped


def test_two_hosts_share_a_sweep_without_sharing_a_run(
    fake: FakeWandb, clock: Clock, keyed: str, tmp_path: Path
) -> None:
    first = make(fake, clock)
    sweep = first.create_sweep(spec_of(GRID))
    assert sweep.url == f"https://wandb.ai/team/sweeper/sweeps/{sweep.id}"
    other = make(fake, clock, home=Home(tmp_path / "host2"))
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
    assert seen[b.run.id].summary == {"test_accuracy": 0.6}
    assert seen[b.run.id].metric == 0.7
    assert first.claim_run(sweep.id, "host1-x").done


def test_entity_and_project_come_from_options_then_wandb_env(
    fake: FakeWandb, clock: Clock, keyed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_ENTITY", "envteam")
    monkeypatch.setenv("WANDB_PROJECT", "envproj")
    from_env = make(fake, clock).create_sweep(spec_of(GRID))
    from_options = make(fake, clock, entity="me", project="mine").create_sweep(spec_of(GRID))
    assert "/envteam/envproj/" in (from_env.url or "")
    assert "/me/mine/" in (from_options.url or "")


def test_crashed_runs_end_failed_on_w_and_b_not_running(
    fake: FakeWandb, clock: Clock, keyed: str
) -> None:
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    backend.log_epoch(run.id, "w", {"epoch": 1, "val_accuracy": 0.5})
    backend.fail_run(run.id, "w", "worker killed by SIGKILL", crashed=True)
    server = fake.runs[run.id]
    assert server.state == "failed"
    assert server.summary["sweeper_state"] == "crashed"
    assert backend.get_run(run.id).state == RunState.crashed


def test_a_requeued_run_is_preempted_on_w_and_b(fake: FakeWandb, clock: Clock, keyed: str) -> None:
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    backend.log_epoch(run.id, "w", {"epoch": 1, "val_accuracy": 0.5})
    backend.requeue_run(run.id, "w", "agent stopped (SIGTERM)")
    assert fake.runs[run.id].state == "preempted"


@pytest.mark.parametrize(
    ("state", "written", "ours"),
    [
        ("running", None, RunState.running),
        ("finished", None, RunState.finished),
        ("finished", "stopped", RunState.stopped),
        ("failed", "crashed", RunState.crashed),
        ("failed", None, RunState.failed),
        ("crashed", None, RunState.crashed),
        ("killed", None, RunState.stopped),
        ("preempted", "pending", RunState.pending),
        ("something-new", None, RunState.crashed),
    ],
)
def test_w_and_b_run_states_map_to_ours(state: str, written: str | None, ours: RunState) -> None:
    summary = {} if written is None else {"sweeper_state": written}
    assert _run_state(RunRecord(id="r", state=state, summary=summary)) == ours


def test_history_drops_wandb_keys_and_keeps_the_last_row_per_epoch() -> None:
    rows = [
        {"_step": 0, "epoch": 1, "val_accuracy": 0.1},
        {"_step": 1, "epoch": 1, "val_accuracy": 0.2},  # a resumed run logs epoch 1 again
        {"_step": 2, "epoch": 2, "val_accuracy": 0.3, "_runtime": 4},
        {"_step": 3, "system/gpu": 1.0},
    ]
    assert _history(rows) == [{"epoch": 1, "val_accuracy": 0.2}, {"epoch": 2, "val_accuracy": 0.3}]


def test_list_runs_is_cached_for_a_report_build(fake: FakeWandb, clock: Clock, keyed: str) -> None:
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    backend.list_runs(sweep.id)
    backend.list_runs(sweep.id)
    backend.best_run(sweep.id)
    assert fake.calls.count("list_runs") == 2  # with and without history, once each


# --- the store migration ---------------------------------------------------------------


def test_a_version_1_store_gains_the_wandb_tables_and_keeps_its_sweeps() -> None:
    home = Home()
    local = open_backend("local", home)
    sweep = local.create_sweep(spec_of(GRID))
    local.close()
    with sqlite3.connect(home.store_path) as conn:
        for table in ("wandb_sweeps", "wandb_runs", "wandb_agents", "wandb_synced"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    reopened = open_backend("local", home)
    assert reopened.get_sweep(sweep.id).name == "grid"
    assert reopened.store.schema_version == store_module.SCHEMA_VERSION == 2
    with reopened.store.transaction() as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"wandb_sweeps", "wandb_runs", "wandb_agents", "wandb_synced"} <= tables


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def cli_fake(fake: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> FakeWandb:
    monkeypatch.setattr(wandb_backend, "RealClient", lambda wandb_dir, timeout: fake)
    return fake


def test_cli_create_without_a_key_names_the_login(tmp_path: Path) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(GRID)
    result = CliRunner().invoke(app, ["create", str(spec_file), "--backend", "wandb"])
    assert result.exit_code == 2
    assert "wandb login" in result.output and "WANDB_API_KEY" in result.output
    assert "Traceback" not in result.output


def test_cli_create_picks_w_and_b_with_a_key_and_the_commands_follow(
    cli_fake: FakeWandb, keyed: str, tmp_path: Path
) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(GRID)
    runner = CliRunner()
    created = runner.invoke(app, ["create", str(spec_file), "--entity", "me", "--project", "proj"])
    assert created.exit_code == 0, created.output
    assert "wandb backend" in created.output and "a W&B API key is configured" in created.output
    assert "https://wandb.ai/me/proj/sweeps/" in created.output
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    assert {k: shown[k] for k in ("backend", "state")} == {"backend": "wandb", "state": "running"}
    paused = runner.invoke(app, ["pause"])
    assert paused.exit_code == 0 and "paused" in paused.output
    assert next(iter(cli_fake.sweeps.values())).state == "PAUSED"
    listed = runner.invoke(app, ["ls", "--json"])
    assert [s["backend"] for s in json.loads(listed.output)] == ["wandb"]


def test_cli_entity_without_w_and_b_is_refused(tmp_path: Path) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(GRID)
    result = CliRunner().invoke(app, ["create", str(spec_file), "--project", "p"])
    assert result.exit_code == 2 and "--backend wandb" in result.output


def test_cli_lists_local_and_w_and_b_sweeps_together(
    cli_fake: FakeWandb, keyed: str, tmp_path: Path
) -> None:
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(GRID)
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
    return yaml.safe_load(GRID)


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
def test_the_fake_server_rejects_them_like_w_and_b(fake: FakeWandb, change: dict[str, Any]) -> None:
    with pytest.raises(FakeHTTPError):
        fake.create_sweep({**_base(), **change}, "team", "p")


def test_a_valid_spec_is_accepted_by_both() -> None:
    config = _base()
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert parse_spec(yaml.safe_dump(config)).method == "grid"


def test_unknown_backend_state_transitions_are_refused(
    fake: FakeWandb, clock: Clock, keyed: str
) -> None:
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    backend.set_sweep_state(sweep.id, SweepState.finished)
    with pytest.raises(SweeperError, match="final"):
        backend.set_sweep_state(sweep.id, SweepState.paused)


def test_the_real_client_writes_runs_linked_to_the_sweep(tmp_path: Path) -> None:
    """RealClient's run calls (init with the run id, log, artifact, summary, preempt, finish) against
    the real wandb package, offline, in a subprocess of their own."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from sweeper.backends.wandb import RealClient, SweepRef

        client = RealClient(Path(sys.argv[1]), 5)
        ref = SweepRef(entity="team", project="proj", id="swp00001")
        client.log_epoch(ref, "run00001", {"lr": 0.1}, {"epoch": 1, "val_accuracy": 0.5})
        checkpoint = Path(sys.argv[1]).parent / "best.pt"
        checkpoint.write_bytes(b"weights")
        client.log_checkpoint(ref, "run00001", {"lr": 0.1}, checkpoint)
        client.end_run(ref, "run00001", {"lr": 0.1}, {"sweeper_state": "finished"}, 0)
        client.end_run(ref, "run00002", {"lr": 0.1}, {"sweeper_state": "pending"}, 1, preempted=True)
        """
    )
    wandb_dir = tmp_path / "w"
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run([sys.executable, "-c", script, str(wandb_dir)], check=True, env=env, timeout=180)
    records = sorted(
        read_run_record(next(d.glob("*.wandb"))) or ("", None)
        for d in (wandb_dir / "wandb").glob("offline-run-*")
    )
    assert records == [("run00001", "swp00001"), ("run00002", "swp00001")]


@pytest.mark.parametrize(("setting", "uploaded"), [("1", ["weights"]), ("", [])])
def test_checkpoints_are_artifacts_when_asked(
    fake: FakeWandb,
    clock: Clock,
    keyed: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    uploaded: list[str],
) -> None:
    monkeypatch.setenv("SWEEPER_WANDB_CHECKPOINTS", setting)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_text("weights")
    backend = make(fake, clock)
    sweep = backend.create_sweep(spec_of(GRID))
    run = backend.claim_run(sweep.id, "w").run
    assert run is not None
    backend.finish_run(run.id, "w", {"checkpoint_path": str(checkpoint)})
    assert fake.runs[run.id].artifacts == uploaded


@pytest.mark.parametrize(("backend", "mirrored"), [("local", True), ("wandb", False)])
def test_workers_mirror_runs_to_wandb_only_for_the_local_backend(
    backend: str, mirrored: bool
) -> None:
    from agent.worker import Worker

    worker = Worker(Home(), backend, "trainer:train", "w1", heartbeat_s=1.0)
    assert worker.wandb.enabled is mirrored
