"""Load: 16 agent processes (one slot each, warm spares on) drain a 200-run sweep from one local
store (SQLite, and PostgreSQL). Promised: no run trained twice, no config lost, every run in a final state, the sweep
finished. The claim rate is printed (run with -s) and recorded in docs/reliability.md."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agent import AgentSummary
from sweeper.backends.local import LocalBackend
from sweeper.models import RunState, SweepState
from sweeper.paths import Home
from tests.agent.agent_testkit import FAKE, make_sweep, runs_of, started_marks
from tests.agent.agent_testkit import HERE as AGENT_TESTS
from tests.reliability.reliability_kit import assert_drained, states

AGENTS = 16
RUNS = 200
#: 200 worker processes start on 2 shared cores: minutes, not seconds.
DRAIN_TIMEOUT_S = 480


@pytest.mark.slow
def test_16_agents_drain_200_runs_without_duplicates_or_losses(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch, each_store: str
) -> None:
    monkeypatch.setenv("FAKE_EPOCH_S", "0.01")
    sweep_id = make_sweep({"seed": list(range(RUNS))}, epochs=1)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                str(AGENT_TESTS / "agent_entry.py"),
                sweep_id,
                f'{{"trainer": "{FAKE}"}}',
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(AGENTS)
    ]
    try:
        outputs = [agent.communicate(timeout=DRAIN_TIMEOUT_S)[0] for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
    wall = time.monotonic() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    summaries = [
        AgentSummary.model_validate_json(out.splitlines()[-1].removeprefix("SUMMARY "))
        for out in outputs
    ]
    assert [agent.returncode for agent in agents] == [0] * AGENTS, outputs

    runs = runs_of(sweep_id)
    assert len(runs) == RUNS and states(runs) == Counter({RunState.finished: RUNS})
    assert_drained(runs, [(seed,) for seed in range(RUNS)], "seed")
    trained = [run_id for run_id, _ in started_marks(agent_env)]
    assert len(trained) == len(set(trained)) == RUNS  # no run was trained twice
    assert sum(s.started for s in summaries) == sum(s.finished for s in summaries) == RUNS
    assert LocalBackend(Home()).get_sweep(sweep_id).state == SweepState.finished

    starts = sorted(run.started_at for run in runs if run.started_at is not None)
    claim_span = (starts[-1] - starts[0]).total_seconds()
    busy = sum(1 for s in summaries if s.finished)
    print(
        f"\nload on {each_store}: {AGENTS} agents, {RUNS} runs in {wall:.1f} s wall; "
        f"{(RUNS - 1) / claim_span:.1f} claims/s between the first and last claim; "
        f"{busy} agents trained runs (min {min(s.finished for s in summaries)}, "
        f"max {max(s.finished for s in summaries)} each); agents and workers used "
        f"{cpu:.0f} CPU-s ({cpu / RUNS:.2f} per run, a worker process each)"
    )
