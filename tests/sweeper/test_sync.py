"""`sweeper sync`: offline wandb runs of local sweeps uploaded once, grouped by sweep.

The upload entry point (wandb's `wandb sync` code) is replaced by a recorder that, like
wandb-core, leaves the `.wandb.synced` marker for each run it uploaded, or none when the
server refused it; the login check runs through wandb's client on the fake server of
tests/sweeper/fake_wandb.py. One test reads a run folder that wandb itself wrote offline,
in a subprocess; the others write the same `.wandb` format directly, which is quicker. The
CLI test under 401 runs against a stand-in HTTP server, wandb's real upload code and all.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner
from wandb.proto import wandb_internal_pb2

from sweeper.backends.local import LocalBackend
from sweeper.cli import app
from sweeper.errors import BackendError, NotFoundError
from sweeper.paths import Home
from sweeper.spec import parse_spec
from sweeper.wandb import sync as wandb_sync
from sweeper.wandb.runfile import run_record
from sweeper.wandb.sync import read_run_record, sync_offline_runs
from tests.standin_http import standin
from tests.sweeper.fake_wandb import KEY, FakeWandb, fresh_wandb_session, serve  # noqa: F401 - autouse fixture
from tests.sweeper.program_runs import write_program_run

ROOT = Path(__file__).resolve().parents[2]

SPEC = """
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  data_dir: {value: data/tiny}
  lr: {values: [0.001, 0.0001]}
"""


class Uploads:
    """Stands in for `wandb sync`: records each call and, as wandb-core does for each run the
    server accepted, writes the run's `.wandb.synced` marker; can fail or refuse the next call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None, str]] = []
        #: Each uploaded run's record as wandb would read it then: (id, group, sweep id).
        self.runs: list[tuple[str, str, str]] = []
        self.error: Exception | None = None
        self.refuse = False  # return quietly without uploading, as wandb's sync does

    def __call__(self, paths: list[Path], entity: str | None, project: str) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.calls.append((sorted(p.name for p in paths), entity, project))
        for path in paths:
            run = run_record(next(path.glob("*.wandb")))
            self.runs.append((run.run_id, run.run_group, run.sweep_id))
        if self.refuse:
            self.refuse = False
            return
        for path in paths:
            for wandb_file in path.glob("*.wandb"):
                wandb_file.with_name(wandb_file.name + ".synced").touch()


def frame(payloads: list[bytes], block: int = 32 * 1024) -> bytes:
    """`payloads` in wandb's transaction-log framing (LevelDB's log format)."""
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for payload in payloads:
        rest, first = payload, True
        while True:
            room = block - len(out) % block
            if room < 7:
                out += b"\x00" * room
                continue
            chunk, rest = rest[: room - 7], rest[room - 7 :]
            kind = (1 if first else 4) if not rest else (2 if first else 3)
            out += struct.pack("<IHB", 0, len(chunk), kind) + chunk
            first = False
            if not rest:
                break
    return bytes(out)


def write_run(home: Home, run_id: str, group: str | None, padding: int = 0) -> Path:
    """An offline run folder as wandb lays it out, with a header and a run record."""
    header = wandb_internal_pb2.Record()
    header.header.SetInParent()
    run = wandb_internal_pb2.Record()
    run.run.run_id = run_id
    if group:
        run.run.run_group = group
    run.run.notes = "x" * padding  # a large record spans several blocks
    run_dir = home.wandb_dir / "wandb" / f"offline-run-20250101_000000-{run_id}"
    run_dir.mkdir(parents=True)
    (run_dir / f"run-{run_id}.wandb").write_bytes(
        frame([header.SerializeToString(), run.SerializeToString()])
    )
    return run_dir


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWandb:
    """The W&B server the login check reaches, through wandb's client."""
    return serve(monkeypatch, tmp_path)


@pytest.fixture
def keyed(fake: FakeWandb) -> str:
    return KEY


@pytest.fixture
def sweeps_here() -> tuple[str, str]:
    """Two local sweeps in the test home."""
    backend = LocalBackend(Home())
    ids = (
        backend.create_sweep(parse_spec(SPEC), name="a").id,
        backend.create_sweep(parse_spec(SPEC), name="b").id,
    )
    backend.close()
    return ids


@pytest.mark.parametrize("padding", [0, 40_000, 100_000])
def test_the_run_record_is_read_whole_across_blocks(padding: int) -> None:
    run_dir = write_run(Home(), "abc123", "sweep1", padding=padding)
    assert read_run_record(next(run_dir.glob("*.wandb"))) == ("abc123", "sweep1")


@pytest.mark.parametrize(
    "content", [b"", b"not a wandb file", b":W&B\xe1\xbe\x00\x00\x00\x00\x00\xff\xff\x01"]
)
def test_other_files_are_not_runs(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run-x.wandb"
    path.write_bytes(content)
    assert read_run_record(path) is None


def test_runs_upload_once_grouped_by_sweep(keyed: str, sweeps_here: tuple[str, str]) -> None:
    a, b = sweeps_here
    home = Home()
    for run_id, group in (
        ("ra1", a),
        ("ra2", a),
        ("rb1", b),
        ("stray", "notasweep"),
        ("nogroup", None),
    ):
        write_run(home, run_id, group)
    uploads = Uploads()
    result = sync_offline_runs(home, project="inat", upload=uploads)
    assert {g.sweep_id: g.run_ids for g in result.groups} == {a: ["ra1", "ra2"], b: ["rb1"]}
    assert sorted(uploads.calls) == sorted(
        [
            (["offline-run-20250101_000000-ra1", "offline-run-20250101_000000-ra2"], None, "inat"),
            (["offline-run-20250101_000000-rb1"], None, "inat"),
        ]
    )
    assert all(p.exists() for p in home.wandb_dir.glob("wandb/offline-run-*-r*/*.wandb.synced"))
    again = sync_offline_runs(home, project="inat", upload=uploads)
    assert (again.groups, again.already_synced) == ([], 3)
    assert len(uploads.calls) == 2


def test_one_sweep_can_be_chosen(keyed: str, sweeps_here: tuple[str, str]) -> None:
    a, b = sweeps_here
    home = Home()
    write_run(home, "ra1", a)
    write_run(home, "rb1", b)
    uploads = Uploads()
    result = sync_offline_runs(home, sweep="b", upload=uploads)
    assert [(g.sweep_id, g.run_ids) for g in result.groups] == [(b, ["rb1"])]
    assert uploads.calls == [(["offline-run-20250101_000000-rb1"], None, "sweeper")]
    with pytest.raises(NotFoundError):
        sync_offline_runs(home, sweep="nosuch", upload=uploads)


def test_entity_and_project_default_to_wandb_env(
    keyed: str, sweeps_here: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    write_run(Home(), "ra1", sweeps_here[0])
    uploads = Uploads()
    sync_offline_runs(Home(), upload=uploads)
    assert uploads.calls == [(["offline-run-20250101_000000-ra1"], "team", "proj")]


def test_no_key_is_a_clear_error_but_a_dry_run_works(sweeps_here: tuple[str, str]) -> None:
    write_run(Home(), "ra1", sweeps_here[0])
    uploads = Uploads()
    with pytest.raises(BackendError, match="wandb login"):
        sync_offline_runs(Home(), upload=uploads)
    preview = sync_offline_runs(Home(), dry_run=True, upload=uploads)
    assert [g.run_ids for g in preview.groups] == [["ra1"]]
    assert uploads.calls == []
    assert not list(Home().wandb_dir.rglob("*.synced"))


def test_a_failed_upload_is_redacted_and_retried_next_time(
    keyed: str, sweeps_here: tuple[str, str]
) -> None:
    write_run(Home(), "ra1", sweeps_here[0])
    uploads = Uploads()
    uploads.error = RuntimeError(f"HTTP 503 posting with key {KEY}")
    with pytest.raises(BackendError) as info:
        sync_offline_runs(Home(), upload=uploads)
    assert KEY not in str(info.value) and "sweeper sync" in str(info.value)
    retried = sync_offline_runs(Home(), upload=uploads)
    assert [g.run_ids for g in retried.groups] == [["ra1"]]


def test_a_refused_sync_is_not_recorded_and_is_retried(
    keyed: str, sweeps_here: tuple[str, str]
) -> None:
    write_run(Home(), "ra1", sweeps_here[0])
    write_run(Home(), "ra2", sweeps_here[0])
    uploads = Uploads()
    uploads.refuse = True
    with pytest.raises(BackendError, match="2 of 2 run") as info:
        sync_offline_runs(Home(), upload=uploads)
    assert "ra1, ra2" in str(info.value) and "sweeper sync" in str(info.value)
    retried = sync_offline_runs(Home(), upload=uploads)
    assert [g.run_ids for g in retried.groups] == [["ra1", "ra2"]]
    assert sync_offline_runs(Home(), upload=uploads).already_synced == 2


def test_a_refused_key_stops_the_sync_before_any_upload(
    fake: FakeWandb, sweeps_here: tuple[str, str]
) -> None:
    write_run(Home(), "ra1", sweeps_here[0])
    uploads = Uploads()
    fake.fail(401, operation="auth_request")
    with pytest.raises(BackendError, match="refused the credentials") as info:
        sync_offline_runs(Home(), upload=uploads)
    assert KEY not in str(info.value)
    assert uploads.calls == []


def test_a_run_wandb_wrote_offline_is_found(keyed: str, sweeps_here: tuple[str, str]) -> None:
    sweep_id = sweeps_here[0]
    script = textwrap.dedent(
        f"""
        import wandb
        run = wandb.init(dir={str(Home().wandb_dir)!r}, group={sweep_id!r}, job_type="sweep",
                         name="r1", config={{"lr": 0.1}}, mode="offline")
        run.log({{"epoch": 1, "val_accuracy": 0.5}})
        run.finish()
        """
    )
    Home().wandb_dir.mkdir(parents=True)
    env = {**os.environ, "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    uploads = Uploads()
    result = sync_offline_runs(Home(), upload=uploads)
    assert [g.sweep_id for g in result.groups] == [sweep_id]
    assert len(uploads.calls) == 1 and len(uploads.calls[0][0]) == 1


def test_a_program_sweeps_run_goes_up_under_its_group_not_a_sweep_w_and_b_lacks(
    keyed: str, sweeps_here: tuple[str, str], tmp_path: Path
) -> None:
    sweep_id = sweeps_here[0]
    wandb_file = write_program_run(Home(), sweep_id, "prog01", cwd=tmp_path)
    assert run_record(wandb_file).sweep_id == sweep_id  # as the script wrote it
    uploads = Uploads()
    result = sync_offline_runs(Home(), upload=uploads)
    assert [(g.sweep_id, g.run_ids) for g in result.groups] == [(sweep_id, ["prog01"])]
    # W&B refuses a run of a sweep it does not have: the copy uploaded is grouped instead.
    assert uploads.runs == [("prog01", sweep_id, "")]
    assert uploads.calls[0][0] == [wandb_file.parent.name]
    assert run_record(wandb_file).sweep_id == sweep_id  # the run itself is left as it was
    assert wandb_file.with_name(wandb_file.name + ".synced").exists()
    assert not list(Home().wandb_dir.glob("sync-*"))  # the copy is gone
    again = sync_offline_runs(Home(), upload=uploads)
    assert (again.groups, again.already_synced, len(uploads.calls)) == ([], 1, 1)


def test_cli_sync_reports_what_it_uploaded(
    keyed: str, sweeps_here: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(Home(), "ra1", sweeps_here[0])
    uploads = Uploads()
    monkeypatch.setattr(wandb_sync, "wandb_sync_upload", uploads)
    runner = CliRunner()
    shown = runner.invoke(app, ["sync", "--dry-run", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["groups"][0]["run_ids"] == ["ra1"]
    done = runner.invoke(app, ["sync"])
    assert done.exit_code == 0, done.output
    assert "Uploaded 1 run(s) of sweep" in done.output and sweeps_here[0] in done.output
    again = runner.invoke(app, ["sync"])
    assert "Nothing to upload" in again.output and "1 run(s) were uploaded before" in again.output


@pytest.mark.slow
def test_cli_sync_under_401_fails_and_leaves_the_runs_queued(sweeps_here: tuple[str, str]) -> None:
    write_run(Home(), "ra1", sweeps_here[0])
    with standin(401) as url:
        env = {**os.environ, "WANDB_BASE_URL": url, "WANDB_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(
            [sys.executable, "-m", "sweeper", "sync"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refused the credentials" in result.stderr and "wandb login" in result.stderr
    assert "Traceback" not in result.stderr and KEY not in result.stdout + result.stderr
    queued = sync_offline_runs(Home(), dry_run=True)
    assert [g.run_ids for g in queued.groups] == [["ra1"]]


def test_cli_sync_without_a_key_exits_2_with_the_login_hint() -> None:
    result = CliRunner().invoke(app, ["sync"])
    assert result.exit_code == 2
    assert "wandb login" in result.output and "Traceback" not in result.output
