"""A fake W&B server behind the `WandbClient` surface that `sweeper.backends.wandb` uses.

There is no W&B server and no network here. `FakeWandb` keeps sweeps, agents and runs in
memory and plays W&B's controller with wandb's own engine (`sweeps.next_run`,
`sweeps.stop_runs`): an agent's heartbeat with no running run gets a `run` command, one
with a run that hyperband would stop gets a `stop` command, a finished or exhausted sweep
gets `exit`. Like the server, `create_sweep` rejects what `sweeps`' schema rejects.

Faults: `fail(method, *errors)` makes the next calls of `method` raise the given errors
(`http_error(429)` builds one that looks like wandb's: `.response.http_status`); with
`unreachable = True` every call raises ConnectionError. Error texts embed the API key, as
a careless transport might, so tests can check that the backend redacts it.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sweeps

from sweeper.backends.wandb import RunRecord, SweepRecord, SweepRef

_START = datetime(2025, 1, 1, tzinfo=timezone.utc)


class FakeHTTPError(Exception):
    """Shaped like wandb's WandbApiFailedError: the status is on `.response.http_status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = SimpleNamespace(http_status=status)


def http_error(status: int) -> FakeHTTPError:
    """An HTTP error whose text leaks the API key, like a logged request URL would."""
    key = os.environ.get("WANDB_API_KEY", "")
    return FakeHTTPError(status, f"HTTP {status} from https://api:{key}@api.wandb.ai/graphql")


@dataclass
class FakeRun:
    id: str
    sweep_id: str
    args: dict[str, Any]
    state: str = "pending"
    visible: bool = False  # a run shows in the API once its process called wandb.init
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime = _START
    stop_sent: bool = False
    artifacts: list[str] = field(default_factory=list)


@dataclass
class FakeSweep:
    ref: SweepRef
    config: dict[str, Any]
    state: str = "RUNNING"
    created_at: datetime = _START


class FakeWandb:
    """An in-memory W&B server and controller; see the module docstring."""

    def __init__(self, entity: str = "team") -> None:
        self.entity = entity
        self.sweeps: dict[str, FakeSweep] = {}
        self.runs: dict[str, FakeRun] = {}
        self.agents: dict[str, str] = {}
        self.calls: list[str] = []
        self.unreachable = False
        self._faults: dict[str, list[BaseException]] = {}
        self._ids = itertools.count(1)

    # -- fault injection -----------------------------------------------------------

    def fail(self, method: str, *errors: BaseException) -> None:
        """Make the next `len(errors)` calls of `method` raise these errors, in order."""
        self._faults.setdefault(method, []).extend(errors)

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if self.unreachable:
            key = os.environ.get("WANDB_API_KEY", "")
            raise ConnectionError(f"cannot connect to https://api.wandb.ai (auth {key})")
        queued = self._faults.get(method)
        if queued:
            raise queued.pop(0)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):05d}"

    def _sweep(self, ref: SweepRef) -> FakeSweep:
        sweep = self.sweeps.get(ref.id)
        if sweep is None or sweep.ref != ref:
            raise FakeHTTPError(404, f"sweep {ref.path} not found")
        return sweep

    # -- the WandbClient surface -----------------------------------------------------

    def default_entity(self) -> str:
        self._enter("default_entity")
        return self.entity

    def sweep_url(self, ref: SweepRef) -> str:
        return f"https://wandb.ai/{ref.entity}/{ref.project}/sweeps/{ref.id}"

    def create_sweep(self, config: dict[str, Any], entity: str, project: str) -> str:
        self._enter("create_sweep")
        violations = sweeps.schema_violations_from_proposed_config(config)
        if violations:
            raise FakeHTTPError(400, "invalid sweep config: " + "; ".join(violations))
        sweep_id = self._next_id("sw")
        created = _START + timedelta(minutes=len(self.sweeps))
        self.sweeps[sweep_id] = FakeSweep(
            SweepRef(entity=entity, project=project, id=sweep_id), dict(config), created_at=created
        )
        return sweep_id

    def get_sweep(self, ref: SweepRef) -> SweepRecord:
        self._enter("get_sweep")
        sweep = self._sweep(ref)
        return SweepRecord(
            id=ref.id,
            name=sweep.config.get("name"),
            state=sweep.state,
            config=sweep.config,
            created_at=sweep.created_at,
        )

    def set_sweep_state(self, ref: SweepRef, state: str) -> None:
        self._enter("set_sweep_state")
        self._sweep(ref).state = state

    def list_runs(self, ref: SweepRef, with_history: bool) -> list[RunRecord]:
        self._enter("list_runs")
        self._sweep(ref)
        return [
            self._record(run, with_history)
            for run in self.runs.values()
            if run.sweep_id == ref.id and run.visible
        ]

    def get_run(self, ref: SweepRef, run_id: str) -> RunRecord | None:
        self._enter("get_run")
        run = self.runs.get(run_id)
        if run is None or not run.visible or run.sweep_id != ref.id:
            return None
        return self._record(run, with_history=True)

    @staticmethod
    def _record(run: FakeRun, with_history: bool) -> RunRecord:
        return RunRecord(
            id=run.id,
            state=run.state,
            config=run.config,
            summary=dict(run.summary),
            # W&B adds its own underscore keys to every history row.
            history=[{**row, "_step": i, "_runtime": 1.0} for i, row in enumerate(run.history)]
            if with_history
            else [],
            created_at=run.created_at,
        )

    def register_agent(self, ref: SweepRef, host: str) -> str:
        self._enter("register_agent")
        self._sweep(ref)
        agent_id = self._next_id("agent")
        self.agents[agent_id] = ref.id
        return agent_id

    def agent_heartbeat(self, agent_id: str, running: list[str]) -> list[dict[str, Any]]:
        self._enter("agent_heartbeat")
        sweep = self.sweeps[self.agents[agent_id]]
        if sweep.state in ("CANCELED", "FINISHED"):
            return [{"type": "stop", "run_id": r} for r in running] + [{"type": "exit"}]
        if sweep.state == "PAUSED":
            return []
        if running:
            return self._stops(sweep, running)
        return self._schedule(sweep)

    def _engine_runs(self, sweep: FakeSweep) -> list[sweeps.SweepRun]:
        metric = sweep.config["metric"]["name"]
        runs = []
        for run in self.runs.values():
            if run.sweep_id != sweep.ref.id:
                continue
            values = [row[metric] for row in run.history if metric in row]
            runs.append(
                sweeps.SweepRun(
                    name=run.id,
                    state=sweeps.RunState(run.state),
                    config=run.args,
                    summary_metrics={metric: values[-1]} if values else {},
                    history=run.history,
                )
            )
        return runs

    def _stops(self, sweep: FakeSweep, running: list[str]) -> list[dict[str, Any]]:
        if "early_terminate" not in sweep.config:
            return []
        to_stop = {r.name for r in sweeps.stop_runs(sweep.config, self._engine_runs(sweep))}
        commands = []
        for run_id in running:
            run = self.runs.get(run_id)
            if run is not None and run_id in to_stop and not run.stop_sent:
                run.stop_sent = True
                commands.append({"type": "stop", "run_id": run_id})
        return commands

    def _schedule(self, sweep: FakeSweep) -> list[dict[str, Any]]:
        count = sum(1 for r in self.runs.values() if r.sweep_id == sweep.ref.id)
        cap = sweep.config.get("run_cap")
        suggestion = None if cap is not None and count >= cap else self._suggest(sweep)
        if suggestion is None:
            sweep.state = "FINISHED"
            return [{"type": "exit"}]
        run_id = self._next_id("run")
        created = _START + timedelta(seconds=len(self.runs))
        self.runs[run_id] = FakeRun(run_id, sweep.ref.id, suggestion, created_at=created)
        return [{"type": "run", "run_id": run_id, "args": suggestion}]

    def _suggest(self, sweep: FakeSweep) -> dict[str, Any] | None:
        suggestion = sweeps.next_run(sweep.config, self._engine_runs(sweep))
        return None if suggestion is None else dict(suggestion.config)

    def log_epoch(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], metrics: dict[str, Any]
    ) -> None:
        self._enter("log_epoch")
        run = self._open(ref, run_id, config)
        run.history.append(dict(metrics))

    def end_run(
        self,
        ref: SweepRef,
        run_id: str,
        config: dict[str, Any],
        summary: dict[str, Any],
        exit_code: int,
        preempted: bool = False,
    ) -> None:
        self._enter("end_run")
        run = self._open(ref, run_id, config)
        run.summary.update(summary)
        if preempted:
            run.state = "preempted"
        else:
            run.state = "finished" if exit_code == 0 else "failed"

    def log_checkpoint(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], path: Path
    ) -> None:
        self._enter("log_checkpoint")
        self._open(ref, run_id, config).artifacts.append(path.read_text())

    def _open(self, ref: SweepRef, run_id: str, config: dict[str, Any]) -> FakeRun:
        """What `wandb.init(id=run_id, resume="allow")` does: create or resume the run."""
        self._sweep(ref)
        run = self.runs.get(run_id)
        if run is None:  # a re-queued crash: a run the controller did not schedule
            run = self.runs[run_id] = FakeRun(
                run_id, ref.id, {k: {"value": v} for k, v in config.items()}
            )
        run.visible, run.state, run.config = True, "running", dict(config)
        return run
