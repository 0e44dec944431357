"""Fixtures for the agent's tests: a fake-trainer environment and agent processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
# The helpers module and the fake trainer live here; workers get this folder on PYTHONPATH.
# The project root goes first: tests/ (on sys.path via tests/conftest.py) has an `agent`
# folder too, which would otherwise shadow the real package under a bare `pytest`.
for path in (HERE, HERE.parents[1]):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from agent_testkit import AgentProcess  # noqa: E402


@pytest.fixture
def agent_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workers can import the fake trainer; wandb is off; returns the folder runs mark their start in."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("FAKE_EPOCH_S", "0.02")
    marks = tmp_path / "marks"
    monkeypatch.setenv("FAKE_MARK_DIR", str(marks))
    return marks


@pytest.fixture
def agent_process() -> Iterator[Callable[..., AgentProcess]]:
    """Start agent processes; any still running at the end of the test are killed."""
    started: list[AgentProcess] = []

    def start(sweep_id: str, **kwargs: Any) -> AgentProcess:
        started.append(AgentProcess(sweep_id, **kwargs))
        return started[-1]

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
