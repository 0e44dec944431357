"""Many hosts on one PostgreSQL store: agents with homes of their own share a sweep, and a
server restart mid-sweep loses no run while the agents carry on. (The 16-agent load and
the kill -9 tests run on PostgreSQL too, through the `each_store` fixture.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent import AgentSummary
from sweeper.backends.local import LocalBackend
from sweeper.models import Control, RunState, SweepState
from sweeper.paths import Home
from tests.agent.agent_testkit import FAKE, PATIENCE_S, make_sweep, runs_of, started_marks, wait_for
from tests.agent.agent_testkit import HERE as AGENT_TESTS
from tests.pg_server import PgServer
from tests.reliability.reliability_kit import assert_drained, sweeper

LR = [0.001, 0.0001]
DROPOUT = [0.0, 0.1, 0.2, 0.3]


@pytest.fixture
def pg_store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's sweeps on a fresh PostgreSQL store, for every process it starts."""
    monkeypatch.setenv("SWEEPER_STORE", pg_url)
    return pg_url


@pytest.fixture
def agents() -> Iterator[list[subprocess.Popen[str]]]:
    """Agent processes the test starts; any left running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for agent in started:
        if agent.poll() is None:
            agent.kill()
        agent.communicate()


def start_agent(sweep_id: str, home: Path, **kwargs: object) -> subprocess.Popen[str]:
    """An agent process (tests/agent/agent_entry.py) with `home` as its SWEEPER_HOME."""
    env = {**os.environ, "SWEEPER_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, str(AGENT_TESTS / "agent_entry.py"), sweep_id,
         json.dumps({"trainer": FAKE, **kwargs})],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def summary(agent: subprocess.Popen[str]) -> AgentSummary:
    output, _ = agent.communicate(timeout=PATIENCE_S * 4)
    assert agent.returncode == 0, output
    return AgentSummary.model_validate_json(output.splitlines()[-1].removeprefix("SUMMARY "))


@pytest.mark.slow
def test_two_homes_share_one_sweep_each_keeping_its_own_files(
    agent_env: Path,
    pg_store: str,
    tmp_path: Path,
    agents: list[subprocess.Popen[str]],
) -> None:
    sweep_id = make_sweep({"lr": LR, "dropout": DROPOUT}, epochs=2)
    homes = [tmp_path / "host-a", tmp_path / "host-b"]
    # A 15 s lease: on a loaded machine a 3 s one ran out between heartbeats, and a
    # reaped run trains twice, which is what this test checks never happens otherwise.
    agents.extend(start_agent(sweep_id, home, heartbeat_s=5.0) for home in homes)
    summaries = [summary(agent) for agent in agents]
    runs = runs_of(sweep_id)
    assert_drained(runs, [(lr, d) for lr in LR for d in DROPOUT], "lr", "dropout")
    trained = [run_id for run_id, _ in started_marks(agent_env)]
    assert sorted(trained) == sorted(r.id for r in runs)  # no run trained twice
    assert sum(s.finished for s in summaries) == len(runs)
    assert {r.host for r in runs} == {socket.gethostname()}
    # Each home holds the logs of the runs its own agent trained, and only those.
    logged = [
        {p.stem for p in (home / "logs" / sweep_id).glob("*.log")} - {"agent"} for home in homes
    ]
    assert logged[0].isdisjoint(logged[1]) and logged[0] | logged[1] == {r.id for r in runs}
    status = sweeper("status", sweep_id, "--json")
    assert status.returncode == 0, status.stderr
    assert {r["host"] for r in json.loads(status.stdout)["runs"]} == {socket.gethostname()}


@pytest.mark.slow
def test_a_server_restart_mid_sweep_loses_no_run_and_agents_carry_on(
    agent_env: Path,
    pg_store: str,
    pg_server: PgServer,
    tmp_path: Path,
    agents: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")
    sweep_id = make_sweep({"lr": LR, "dropout": DROPOUT}, epochs=3)
    agents.extend(start_agent(sweep_id, tmp_path / f"host-{i}", heartbeat_s=2.0) for i in range(2))
    wait_for(
        lambda: sum(r.state == RunState.finished for r in runs_of(sweep_id)) >= 2,
        "two runs to finish before the restart",
    )
    pg_server.restart()
    restarted = datetime.now(timezone.utc)
    summaries = [summary(agent) for agent in agents]
    runs = runs_of(sweep_id)
    # Runs whose heartbeats fell in the outage may have been reaped and re-run: every
    # config still finished exactly once, and nothing is left running or pending.
    assert_drained(runs, [(lr, d) for lr in LR for d in DROPOUT], "lr", "dropout")
    assert all(s.ok for s in summaries)
    assert any(r.started_at and r.started_at > restarted for r in runs)  # they carried on


@pytest.mark.slow
def test_the_last_run_of_a_dead_host_is_trained_by_the_agent_still_up(
    agent_env: Path,
    pg_store: str,
    tmp_path: Path,
    agents: list[subprocess.Popen[str]],
) -> None:
    sweep_id = make_sweep({"lr": LR}, epochs=1)
    # Host A's agent claims a config and keeps it alive until host B has trained the other
    # one; then it dies (as kill -9 leaves it: a running run that no one heartbeats).
    dead = LocalBackend(Home(tmp_path / "host-a"), host="host-a")
    lost = dead.claim_run(sweep_id, "host-a-w0", lease_s=3.0).run
    assert lost is not None
    agents.append(start_agent(sweep_id, tmp_path / "host-b", heartbeat_s=1.0))
    wait_for(
        lambda: (
            dead.heartbeat(lost.id, "host-a-w0") == Control.proceed
            and any(r.state == RunState.finished for r in runs_of(sweep_id))
        ),
        "host B to finish the other config",
    )
    done = summary(agents[0])
    # Host B found the grid exhausted while host A's run was in its lease, kept asking,
    # and trained that config once the lease had run out.
    runs = runs_of(sweep_id)
    assert_drained(runs, [(lr,) for lr in LR], "lr")
    assert (done.ok, done.finished, done.reason) == (True, 2, "grid exhausted: all 2 configs ran")
    crashed = next(r for r in runs if r.id == lost.id)
    assert crashed.state == RunState.crashed and "no heartbeat" in (crashed.reason or "")
    assert LocalBackend(Home()).get_sweep(sweep_id).state == SweepState.finished
