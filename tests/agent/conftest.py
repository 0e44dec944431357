"""Fixtures for the agent's tests: agent processes (`agent_env` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.agent.agent_testkit import AgentProcess


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
