"""Helpers for the agent's tests: sweeps in a real local store, waiting, and agents run in a
thread or as their own process. Fixtures are in conftest.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent import AgentSummary, run_agent
from sweeper.backends.local import LocalBackend
from sweeper.models import Run, RunState
from sweeper.paths import Home
from tests.specs import parsed_spec

HERE = Path(__file__).parent
FAKE = "tests.agent.fake_trainer:train"
#: Generous bound on waits for things that normally take well under a second.
PATIENCE_S = 60.0


def make_sweep(
    swept: dict[str, list[Any]],
    *,
    method: str = "grid",
    epochs: int = 2,
    run_cap: int | None = None,
    early_terminate: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    unchecked: dict[str, Any] | None = None,
) -> str:
    """Create a sweep in the test's home over `swept` values, fixed data_dir and epochs; return its id.

    `unchecked` settings join the spec after validation, as in a sweep made outside sweeper
    (on W&B), so a test can hand the trainer a config it rejects.
    """
    parameters: dict[str, Any] = {"data_dir": {"value": "data"}}
    if "epochs" not in swept:
        parameters["epochs"] = {"value": epochs}
    parameters.update({name: {"value": value} for name, value in (fixed or {}).items()})
    parameters.update({name: {"values": values} for name, values in swept.items()})
    raw: dict[str, Any] = {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": parameters,
    }
    if run_cap is not None:
        raw["run_cap"] = run_cap
    if early_terminate is not None:
        raw["early_terminate"] = early_terminate
    spec = parsed_spec(raw)
    if unchecked:
        parameters = {**parameters, **{name: {"value": v} for name, v in unchecked.items()}}
        spec = spec.model_copy(update={"raw": {**raw, "parameters": parameters}})
    return LocalBackend(Home()).create_sweep(spec).id


def runs_of(sweep_id: str) -> list[Run]:
    """The sweep's runs as the store has them."""
    return LocalBackend(Home()).list_runs(sweep_id)


def configs(runs: list[Run], state: RunState, *names: str) -> list[tuple[Any, ...]]:
    """Sorted tuples of the `names` values of the runs in `state`."""
    return sorted(tuple(r.config[n] for n in names) for r in runs if r.state == state)


def wait_for(check: Callable[[], Any], what: str, timeout: float = PATIENCE_S) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def started_marks(marks: Path) -> list[tuple[str, int]]:
    """(run id, worker pid) of every run the fake trainer started, oldest first."""
    if not marks.exists():
        return []
    files = sorted(marks.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return [(p.stem, int(p.suffix[1:])) for p in files]


class AgentThread(threading.Thread):
    """`run_agent` in a background thread (no signal handlers there), for tests that poke workers."""

    def __init__(self, sweep_id: str, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.sweep_id, self.kwargs = sweep_id, kwargs
        self.summary: AgentSummary | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.summary = run_agent(self.sweep_id, home=Home(), trainer=FAKE, **self.kwargs)
        except BaseException as exc:
            self.error = exc

    def result(self) -> AgentSummary:
        self.join(PATIENCE_S * 2)
        assert not self.is_alive(), "agent did not exit"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


class AgentProcess:
    """An agent as its own process (tests/agent/agent_entry.py), to send it real signals."""

    def __init__(self, sweep_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trainer", FAKE)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "agent_entry.py"), sweep_id, json.dumps(kwargs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""

    def finish(self) -> tuple[int, AgentSummary]:
        """Wait for exit; return its exit code and summary."""
        self.output, _ = self.proc.communicate(timeout=PATIENCE_S * 2)
        line = next((ln for ln in self.output.splitlines() if ln.startswith("SUMMARY ")), None)
        assert line is not None, f"agent printed no summary:\n{self.output}"
        return self.proc.returncode, AgentSummary.model_validate_json(line.removeprefix("SUMMARY "))
