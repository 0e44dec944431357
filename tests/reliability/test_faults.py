"""Faults: kill -9 at chosen and at random points, SIGTERM, SIGINT twice, a hung worker, a full
or read-only disk, a damaged store, two writers of one checkpoint path.

Every test states the promised outcome: a run cut short ends crashed (its config re-queued) or
back in the queue, with a reason; nothing stays `running`; the sweep finishes on restart; no
partial checkpoint is ever loaded; the user sees a one-paragraph error, never a traceback.
Real processes, real signals, a real store; the agent tests' fake trainer stands in for
`trainer.train` where training itself is not the point.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from agent import run_agent
from sweeper.backends.local import LocalBackend
from sweeper.models import RunState, SweepState
from sweeper.paths import Home
from sweeper.store import SCHEMA_VERSION
from tests.agent.agent_testkit import (
    FAKE,
    AgentProcess,
    make_sweep,
    runs_of,
    started_marks,
    wait_for,
)
from tests.reliability.reliability_kit import (
    assert_clean_error,
    assert_drained,
    integrity,
    start_sweeper,
    states,
    sweeper,
    write_spec,
)
from trainer import TrainConfig, TrainerError, train

pytestmark = pytest.mark.usefixtures("agent_env")

LR = [1e-3, 1e-4]
SEEDS = list(range(30))


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _agent(sweep_id: str, **kwargs: Any) -> Any:
    kwargs.setdefault("heartbeat_s", 0.5)
    return run_agent(sweep_id, home=Home(), trainer=FAKE, **kwargs)


def _finished_sweep(sweep_id: str) -> None:
    assert LocalBackend(Home()).get_sweep(sweep_id).state == SweepState.finished


# --- kill -9 inside the store --------------------------------------------------------------

CLAIM_VICTIM = """
import sys, time
from sweeper import engine
from sweeper.backends.local import LocalBackend

def stuck(spec, runs):
    print("inside the claim", flush=True)
    time.sleep(600)

engine.propose = stuck
LocalBackend().claim_run(sys.argv[1], "victim", lease_s=0.5)
"""


def test_kill_9_inside_a_claim_leaves_no_run_and_no_lock() -> None:
    # The victim dies holding the store's write lock, between reading the runs and inserting one.
    sweep_id = make_sweep({"lr": LR})
    victim = subprocess.Popen(
        [sys.executable, "-c", CLAIM_VICTIM, sweep_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline() == "inside the claim\n"
    finally:
        victim.kill()
        victim.wait()
    assert integrity(Home().store_path) == "ok"
    assert runs_of(sweep_id) == []
    summary = _agent(sweep_id)
    assert summary.ok and summary.finished == 2
    assert_drained(runs_of(sweep_id), [(lr,) for lr in LR], "lr")
    _finished_sweep(sweep_id)


STORE_VICTIM = """
import os, random, signal, sys
from sweeper.backends.local import LocalBackend

sweep_id, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = LocalBackend()
commits, kill_at = 0, random.Random(seed).randint(1, 60)

def on_statement(statement):
    global commits
    if statement == "COMMIT":
        commits += 1
        if commits == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

if mode == "commit":
    with backend.store.transaction() as conn:
        conn.set_trace_callback(on_statement)
print("working", flush=True)
while (claim := backend.claim_run(sweep_id, "victim", lease_s=0.2)).run is not None:
    backend.log_epoch(claim.run.id, "victim", {"epoch": 1, "val_accuracy": 0.5})
    backend.finish_run(claim.run.id, "victim", {"best_val_accuracy": 0.5})
print("drained", flush=True)
"""


@pytest.mark.parametrize(
    ("point", "seed"), [("commit", 1), ("commit", 2), ("commit", 3), ("random", 4), ("random", 5)]
)
def test_kill_9_during_claims_and_commits_loses_nothing(point: str, seed: int) -> None:
    # "commit": SIGKILL as a COMMIT starts (its writes may be in the WAL, not yet committed);
    # "random": SIGKILL after a random delay, wherever the claim/epoch/finish loop is.
    sweep_id = make_sweep({"seed": SEEDS})
    victim = subprocess.Popen(
        [sys.executable, "-c", STORE_VICTIM, sweep_id, point, str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout is not None and victim.stdout.readline() == "working\n"
    if point == "random":
        time.sleep(random.Random(seed).uniform(0.0, 0.3))
    victim.kill()
    rest, _ = victim.communicate()
    assert victim.returncode == -signal.SIGKILL and "drained" not in rest
    assert integrity(Home().store_path) == "ok"
    assert states(runs_of(sweep_id))[RunState.running] <= 1
    time.sleep(0.3)  # the victim's lease (0.2 s) runs out; the next claim reaps its run
    backend = LocalBackend(Home())
    while (claim := backend.claim_run(sweep_id, "survivor", lease_s=60)).run is not None:
        backend.finish_run(claim.run.id, "survivor", {"best_val_accuracy": 0.6})
    runs = runs_of(sweep_id)
    assert_drained(runs, [(s,) for s in SEEDS], "seed")
    for run in runs:
        if run.state == RunState.crashed:
            assert run.reason is not None and run.reason.startswith(
                "no heartbeat from worker victim"
            )
    _finished_sweep(sweep_id)


# --- kill -9 of workers and agents at random points ----------------------------------------


@pytest.mark.slow
def test_random_kill_9_of_workers_and_agents_then_a_restart_finishes_the_sweep(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch, each_store: str
) -> None:
    # Runs take ~1.2 s (3 epochs of 0.4 s); kills land mid-epoch, in a claim, during the
    # supervisor's store writes or a worker's start: wherever the random delay ends.
    monkeypatch.setenv("FAKE_EPOCH_S", "0.4")
    space = [(lr, dropout) for lr in LR for dropout in (0.0, 0.1, 0.2, 0.3)]
    sweep_id = make_sweep({"lr": LR, "dropout": [0.0, 0.1, 0.2, 0.3]}, epochs=3)
    rng = random.Random(20)
    kills: Counter[str] = Counter()
    for _ in range(3):
        agent = AgentProcess(sweep_id, per_gpu=2, heartbeat_s=0.3, trainer=FAKE)
        try:
            # Wait for a training worker first: on a loaded machine the agent may need
            # longer than the random delay to start one, and then no worker would be killed.
            wait_for(
                lambda: [pid for _, pid in started_marks(agent_env) if _alive(pid)],
                "a worker to start training",
            )
            time.sleep(rng.uniform(0.0, 0.8))
            live = [pid for _, pid in started_marks(agent_env) if _alive(pid)]
            if live:
                os.kill(rng.choice(live), signal.SIGKILL)
                kills["worker"] += 1
            time.sleep(rng.uniform(0.2, 1.5))
        finally:
            agent.proc.kill()
            agent.proc.communicate()
        kills["agent"] += 1
    # The killed agents' workers die with them (PR_SET_PDEATHSIG).
    for _, pid in started_marks(agent_env):
        wait_for(lambda pid=pid: not _alive(pid), f"orphaned worker {pid} to die")

    # Their last runs stay `running` until the lease lapses. A warm agent can drain the
    # rest of the grid within one lease, and an agent stops once nothing is left to hand
    # out, so the restart comes once they are crashed and re-queued.
    def reaped() -> bool:
        LocalBackend(Home()).reap_stale()
        return all(r.state != RunState.running for r in runs_of(sweep_id))

    wait_for(reaped, "the killed agents' runs to be reaped")
    monkeypatch.setenv("FAKE_EPOCH_S", "0.02")
    summary = _agent(sweep_id, heartbeat_s=0.3, per_gpu=2)
    assert summary.ok, summary
    runs = runs_of(sweep_id)
    assert kills["worker"] >= 1 and states(runs)[RunState.crashed] >= 1
    # Each config ends exactly once: finished, or failed after its third crash (with the reason).
    for config in space:
        ends = [
            r
            for r in runs
            if (r.config["lr"], r.config["dropout"]) == config and r.state != RunState.crashed
        ]
        assert len(ends) == 1, (config, [(r.state, r.reason) for r in runs])
        end = ends[0]
        assert end.state == RunState.finished or "crashed 3 times" in (end.reason or ""), end
    for run in runs:
        if run.state == RunState.crashed:
            assert run.reason in ("worker killed by SIGKILL",) or "no heartbeat" in (
                run.reason or ""
            )
    assert states(runs)[RunState.running] == states(runs)[RunState.pending] == 0
    _finished_sweep(sweep_id)
    print(
        f"\nchaos: killed {kills['worker']} workers and {kills['agent']} agents; "
        f"{len(runs)} runs for {len(space)} configs: {dict(states(runs))}"
    )


# --- checkpoints ------------------------------------------------------------------------------

CHECKPOINT_WRITER = """
import sys, torch
from pathlib import Path
from trainer.atomic import save_atomic

path, tag = Path(sys.argv[1]), float(sys.argv[2])
print("writing", flush=True)
version = 0
while True:
    version += 1
    save_atomic(path, {"tag": tag, "version": version, "model": {"w": torch.full((500_000,), tag)}})
"""


def _start_writer(path: Path, tag: float) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", CHECKPOINT_WRITER, str(path), str(tag)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    return writer


def _load_whole(path: Path) -> float:
    """Load `path` the way the trainer does; fail unless it is one writer's complete checkpoint."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    weights = payload["model"]["w"]
    assert weights.numel() == 500_000 and bool((weights == payload["tag"]).all())
    return float(payload["tag"])


@pytest.fixture
def writers() -> Iterator[Callable[[Path, float], subprocess.Popen[str]]]:
    """Start checkpoint writer processes; every one is killed at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, tag: float) -> subprocess.Popen[str]:
        started.append(_start_writer(path, tag))
        return started[-1]

    yield start
    for writer in started:
        writer.kill()
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()


@pytest.mark.slow
def test_kill_9_during_checkpoint_writes_never_leaves_a_partial_best_pt(
    tmp_path: Path, writers: Callable[[Path, float], subprocess.Popen[str]]
) -> None:
    path = tmp_path / "checkpoints" / "best.pt"
    rng = random.Random(7)
    for attempt in range(3):
        writer = writers(path, float(attempt + 1))
        time.sleep(rng.uniform(0.05, 0.6))
        writer.kill()
        writer.communicate()
        assert _load_whole(path) in (float(attempt), float(attempt + 1))
    # A killed write leaves at most its hidden temp file, which nothing ever loads.
    assert {p.name for p in path.parent.iterdir() if not p.name.endswith(".tmp")} == {"best.pt"}


@pytest.mark.slow
def test_two_writers_of_one_checkpoint_path_never_interleave(
    tmp_path: Path, writers: Callable[[Path, float], subprocess.Popen[str]]
) -> None:
    # Two sweeps' runs pointed at one checkpoint file: readers see one writer's whole file.
    path = tmp_path / "shared" / "best.pt"
    writers(path, 1.0)
    writers(path, 2.0)
    seen = Counter(_load_whole(path) for _ in range(40))
    assert set(seen) <= {1.0, 2.0} and sum(seen.values()) == 40


def test_two_sweeps_with_one_checkpoint_dir_in_the_spec_write_apart(
    tmp_path: Path,
) -> None:
    # The agent gives every run its own checkpoint folder under the home, whatever the spec says.
    shared = tmp_path / "shared-checkpoints"
    fixed = {"checkpoint_dir": str(shared), "epochs": 1}
    sweeps = [make_sweep({"seed": [1, 2]}, fixed=fixed) for _ in range(2)]
    for sweep_id in sweeps:
        run_agent(
            sweep_id, home=Home(), trainer="tests.reliability.probe_trainer:train", heartbeat_s=2.0
        )
    paths = {}
    for sweep_id in sweeps:
        for run in runs_of(sweep_id):
            assert run.state == RunState.finished, run.reason
            paths[run.id] = Path(run.summary["checkpoint_path"])
            assert paths[run.id] == Home().checkpoint_dir(sweep_id, run.id) / "best.pt"
            assert paths[run.id].is_file()
    assert len(set(paths.values())) == 4
    assert not shared.exists()


def test_a_full_disk_while_writing_a_checkpoint_fails_the_run_cleanly(
    image_folder: Path, tmp_path: Path, tmpfs: Callable[[Path, str], Path]
) -> None:
    # resnet18's checkpoint (~45 MB) cannot fit in 2 MB; the run must fail with the reason.
    folder = tmpfs(tmp_path / "small-disk", "2m")
    config = TrainConfig(
        data_dir=str(image_folder),
        model="resnet18",
        mode="scratch",
        weights="none",
        image_size=16,
        epochs=1,
        num_workers=0,
        checkpoint_dir=str(folder / "run1"),
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(
        TrainerError, match=r"cannot write the checkpoint .*No space left on device"
    ):
        train(config)
    assert list((folder / "run1").iterdir()) == []  # no best.pt, no temp file left behind


# --- signals and a hung worker through `sweeper agent` ---------------------------------------


def _cli_sweep(tmp_path: Path, epochs: int) -> str:
    spec = write_spec(tmp_path / "two.yaml", {"lr": {"values": LR}, "epochs": {"value": epochs}})
    created = sweeper("create", spec, "--backend", "local", "--json")
    assert created.returncode == 0, created.stderr
    return str(json.loads(created.stdout)["id"])


def _finish_with_cli(sweep_id: str) -> None:
    """A restarted `sweeper agent` finishes the sweep: every config once, nothing left over."""
    done = sweeper("agent", sweep_id, "--gpus", "none", "--trainer", FAKE, "--heartbeat", "1")
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout
    assert_drained(runs_of(sweep_id), [(lr,) for lr in LR], "lr")
    _finished_sweep(sweep_id)


@pytest.mark.slow
def test_sigterm_to_sweeper_agent_requeues_and_a_restart_finishes(
    agent_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "2.0")
    sweep_id = _cli_sweep(tmp_path, epochs=3)
    agent = start_sweeper(
        "agent", "--gpus", "none", "--per-gpu", "2", "--trainer", FAKE, "--heartbeat", "1"
    )
    try:
        wait_for(lambda: len(started_marks(agent_env)) == 2, "both runs to start")
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == 0, output
    assert "Traceback" not in output and "stopped by SIGTERM" in output
    runs = runs_of(sweep_id)
    assert [(r.state, r.reason) for r in runs] == [
        (RunState.pending, "agent stopped (SIGTERM)")
    ] * 2
    monkeypatch.setenv("FAKE_EPOCH_S", "0.02")
    _finish_with_cli(sweep_id)


@pytest.mark.slow
def test_ctrl_c_twice_kills_workers_requeues_and_a_restart_finishes(
    agent_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "2.0")
    monkeypatch.setenv("FAKE_IGNORE_STOP", "1")  # the run will not stop at a batch boundary
    sweep_id = _cli_sweep(tmp_path, epochs=3)
    agent = start_sweeper("agent", "--gpus", "none", "--trainer", FAKE, "--heartbeat", "1")
    try:
        (run_id, pid), *_ = wait_for(lambda: started_marks(agent_env), "the run to start")
        agent.send_signal(signal.SIGINT)
        log = Home().agent_log_path(sweep_id)
        wait_for(lambda: "stopping: stopped by Ctrl-C" in log.read_text(), "the first Ctrl-C")
        agent.send_signal(signal.SIGINT)
        output, _ = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == 0, output
    assert "Traceback" not in output and "stopped by Ctrl-C" in output
    assert not _alive(pid)
    run = LocalBackend(Home()).get_run(run_id)
    assert (run.state, run.reason) == (
        RunState.pending,
        "agent stopped before the run could re-queue itself",
    )
    assert states(runs_of(sweep_id))[RunState.running] == 0
    monkeypatch.delenv("FAKE_IGNORE_STOP")
    monkeypatch.setenv("FAKE_EPOCH_S", "0.02")
    _finish_with_cli(sweep_id)


@pytest.mark.slow
def test_a_hung_worker_is_killed_its_run_crashed_and_its_config_rerun(
    agent_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGSTOP freezes the worker, heartbeat thread included: it neither beats nor exits.
    monkeypatch.setenv("FAKE_EPOCH_S", "1.0")
    sweep_id = _cli_sweep(tmp_path, epochs=2)
    agent = start_sweeper("agent", "--gpus", "none", "--trainer", FAKE, "--heartbeat", "0.5")
    pid = 0
    try:
        run_id, pid = wait_for(lambda: started_marks(agent_env), "the first run to start")[0]
        os.kill(pid, signal.SIGSTOP)
        output, _ = agent.communicate(timeout=120)
    finally:
        agent.kill()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert agent.returncode == 0, output
    assert "Traceback" not in output
    runs = runs_of(sweep_id)
    hung = LocalBackend(Home()).get_run(run_id)
    assert hung.state == RunState.crashed
    assert hung.reason is not None and hung.reason.startswith("worker hung: no heartbeat for")
    assert_drained(runs, [(lr,) for lr in LR], "lr")
    _finished_sweep(sweep_id)


# --- the store: full, read-only, damaged, newer --------------------------------------------------


def _fill(folder: Path) -> Path:
    """Write zeros into `folder` until its file system is full; return the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_a_full_disk_under_the_store_is_a_clear_error_and_loses_nothing(
    agent_env: Path, tmp_path: Path, tmpfs: Callable[[Path, str], Path]
) -> None:
    home = tmpfs(Home().root, "2m")
    sweep_id = _cli_sweep(tmp_path, epochs=1)
    before = sweeper("status", "--json").stdout
    filler = _fill(home)
    second = write_spec(tmp_path / "second.yaml", {"lr": {"values": LR}})
    assert_clean_error(sweeper("create", second, "--backend", "local"))
    assert_clean_error(sweeper("agent", "--gpus", "none", "--trainer", FAKE, "--heartbeat", "1"))
    filler.unlink()
    assert integrity(home / "store.db") == "ok"
    assert sweeper("status", "--json").stdout == before  # the failed commands left no trace
    _finish_with_cli(sweep_id)


def test_a_full_disk_is_named_as_such(
    agent_env: Path, tmp_path: Path, tmpfs: Callable[[Path, str], Path]
) -> None:
    home = tmpfs(Home().root, "2m")
    _cli_sweep(tmp_path, epochs=1)
    _fill(home)
    assert_clean_error(sweeper("ls"), "full")


@pytest.fixture
def read_only(tmpfs: Callable[[Path, str], Path]) -> Iterator[Callable[[Path], None]]:
    """Make a tmpfs mounted with `tmpfs` read-only (`read_only(folder)`); writable again after."""
    made: list[Path] = []

    def remount(folder: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        made.append(folder)

    yield remount
    for folder in made:
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=False)


@pytest.mark.slow
def test_a_read_only_home_is_a_clear_error_and_loses_nothing(
    agent_env: Path,
    tmp_path: Path,
    tmpfs: Callable[[Path, str], Path],
    read_only: Callable[[Path], None],
) -> None:
    home = tmpfs(Home().root, "4m")
    sweep_id = _cli_sweep(tmp_path, epochs=1)
    before = (home / "store.db").read_bytes()
    read_only(home)
    second = write_spec(tmp_path / "second.yaml", {"lr": {"values": LR}})
    for command in (
        ["create", second, "--backend", "local"],
        ["agent", "--gpus", "none", "--trainer", FAKE],
        ["status"],
        ["report"],
    ):
        assert_clean_error(sweeper(*command))
    subprocess.run(["mount", "-o", "remount,rw", str(home)], check=True)
    assert (home / "store.db").read_bytes() == before
    _finish_with_cli(sweep_id)


def test_a_read_only_home_is_named_as_such(
    agent_env: Path,
    tmp_path: Path,
    tmpfs: Callable[[Path, str], Path],
    read_only: Callable[[Path], None],
) -> None:
    home = tmpfs(Home().root, "4m")
    _cli_sweep(tmp_path, epochs=1)
    read_only(home)
    assert_clean_error(sweeper("ls"), "read-only")


def _garbage(store: Path) -> None:
    store.write_bytes(random.Random(0).randbytes(16_384))


def _zeroed_pages(store: Path) -> None:
    data = bytearray(store.read_bytes())
    data[4096:] = bytes(len(data) - 4096)  # every page after the first: tables are lost
    store.write_bytes(bytes(data))


def _newer_schema(store: Path) -> None:
    conn = sqlite3.connect(store)
    with conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    conn.close()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_garbage, ["not a sweeper store, or is damaged"]),
        (_zeroed_pages, ["store", "malformed"]),
        (_newer_schema, ["newer sweeper", "upgrade sweeper"]),
    ],
    ids=["garbage", "zeroed-pages", "newer-schema"],
)
def test_a_damaged_or_newer_store_is_refused_with_a_clear_error(
    tmp_path: Path, damage: Callable[[Path], None], words: list[str]
) -> None:
    spec = write_spec(tmp_path / "s.yaml", {"lr": {"values": LR}})
    assert sweeper("create", spec, "--backend", "local").returncode == 0
    store = Home().store_path
    damage(store)
    before = store.read_bytes()
    for command in (["ls"], ["create", spec, "--backend", "local"], ["agent"]):
        assert_clean_error(sweeper(*command), *words)
    assert store.read_bytes() == before  # refused before anything was written
