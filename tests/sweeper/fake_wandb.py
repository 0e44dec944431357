"""A fake W&B server under wandb's own client: it answers the requests wandb-core would send.

wandb 0.31 sends every public-API request (GraphQL documents, history scans, the login
check) through `ServiceApi` to its wandb-core sidecar, which talks HTTP to the server.
`FakeWandb.install` replaces the sidecar connection (`ServiceApi._get_api_session`) with
this object, so `wandb.Api()`, `wandb.sweep` and the agent helpers of
`wandb.apis.public.sweeps` run unchanged above it, and the fake sees the documents and
variables wandb really sends. It answers by operation name and checks the variables it
reads, so a change of wandb's documents breaks a test instead of passing silently; an
unknown document fails loudly.

It plays W&B's controller with wandb's own engine (`sweeps.next_run`, `sweeps.stop_runs`):
a Heartbeat with no running run gets `resume` for a run that ended preempted, else `run`
with the next config, else `exit`; hyperband's `stop` for running runs; `stop` + `exit`
for a canceled or finished sweep; nothing for a paused one. Like the server, UpsertSweep
rejects what `sweeps`' schema rejects.

Runs: W&B learns a run's config, history, summary and end from the run's own stream.
Offline, wandb writes that stream to the run's `.wandb` file, so the fake reads those
files under `runs_dir` (with `sweeper.wandb.runfile`) as the server would receive them:
`run_files()` gives tests the records to check (sweep id, run id, config).

Faults: `fail(status, times, operation)` answers the next `times` requests (of one
operation, or any) with that HTTP status, as wandb-core reports it (`WandbApiFailedError`
with `ApiErrorResponse.http_status`); its message embeds the API key, as a careless
transport might, so tests check that sweeper redacts it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sweeps
from wandb.apis.public import service_api
from wandb.proto import wandb_api_pb2 as apb
from wandb.sdk.lib.service.service_connection import WandbApiFailedError

from sweeper.wandb import runfile

#: Ids unique in the test process: wandb-core is shared by every test, and refuses to open a
#: run whose id a run of an earlier test still holds.
_IDS = itertools.count(1)
_OPERATION = re.compile(r"\b(query|mutation)\s+(\w+)")
_CREATED = "2025-01-01T00:00:{:02d}Z"


@dataclass
class FakeRun:
    """A run the controller issued; what wandb uploaded for it is read from its files."""

    id: str
    sweep_id: str
    args: dict[str, Any]
    order: int
    stop_sent: bool = False
    resumed_after: int = -1  # segments seen when it was last handed out again


@dataclass
class Uploaded:
    """What the server holds for a run, from its `.wandb` files (one per start or resume)."""

    segments: int = 0
    sweep_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    state: str = "running"


@dataclass
class FakeSweep:
    id: str
    entity: str
    project: str
    config: dict[str, Any]
    order: int
    state: str = "RUNNING"


class FakeWandb:
    """An in-memory W&B server and controller under wandb's client; see the module docstring."""

    def __init__(self, runs_dir: Path, entity: str = "team") -> None:
        self.runs_dir = runs_dir
        self.entity = entity
        self.sweeps: dict[str, FakeSweep] = {}
        self.runs: dict[str, FakeRun] = {}
        self.agents: dict[str, str] = {}
        self.operations: list[str] = []
        self._faults: list[tuple[int, tuple[str, ...] | None]] = []
        self._ids = _IDS
        self._scans: dict[int, list[dict[str, Any]]] = {}

    # -- wiring and faults -----------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeWandb:
        """Put this server under every `wandb.Api()` of the test."""
        session = service_api._ServiceApiSession(connection=self, api_id="fake")  # type: ignore[arg-type]
        monkeypatch.setattr(service_api.ServiceApi, "_get_api_session", lambda _self: session)
        return self

    def fail(
        self, status: int, times: int = 1, operation: str | tuple[str, ...] | None = None
    ) -> None:
        """Answer the next `times` requests (of `operation` or operations, or any) with HTTP
        `status`."""
        names = (operation,) if isinstance(operation, str) else operation
        self._faults.extend([(status, names)] * times)

    def finalize(self, obj: object, request: Any) -> Callable[[], None]:
        """wandb-core's clean-up hook for scans; nothing to clean here."""
        return lambda: None

    def api_request(self, request: apb.ApiRequest, timeout: float | None = None) -> apb.ApiResponse:
        """One request as wandb-core receives it; errors raised as ServiceConnection does."""
        kind = request.WhichOneof("request")
        operation = kind or ""
        if kind == "graphql_request":
            found = _OPERATION.search(request.graphql_request.query)
            operation = found.group(2) if found else "anonymous"
        self.operations.append(operation)
        for i, (status, wanted) in enumerate(self._faults):
            if wanted is None or operation in wanted:
                del self._faults[i]
                key = os.environ.get("WANDB_API_KEY", "")
                message = f"HTTP {status} from https://api:{key}@api.wandb.ai/graphql"
                raise WandbApiFailedError(
                    message, apb.ApiErrorResponse(message=message, http_status=status)
                )
        if kind == "auth_request":
            response = apb.ApiResponse()
            response.auth_response.authenticate_response.default_entity = self.entity
            response.auth_response.authenticate_response.username = self.entity
            return response
        if kind == "features_request":
            return apb.ApiResponse()
        if kind == "read_run_history_request":
            return self._history_scan(request.read_run_history_request)
        if kind != "graphql_request":
            raise AssertionError(f"the fake W&B server does not answer {kind} requests")
        variables = json.loads(request.graphql_request.variables_json or "{}")
        handler = getattr(self, f"_gql_{operation}", None)
        if handler is None:
            raise AssertionError(f"wandb sent a document the fake does not know: {operation}")
        data = handler(variables)
        response = apb.ApiResponse()
        response.graphql_response.data_json = json.dumps(data)
        return response

    # -- GraphQL documents -------------------------------------------------------------

    def _gql_GetDefaultEntity(self, variables: dict[str, Any]) -> Any:
        return {"viewer": {"id": "u1", "entity": self.entity}}

    def _gql_UpsertSweep(self, variables: dict[str, Any]) -> Any:
        if variables.get("id"):  # _set_sweep_state: a state change of an existing sweep
            sweep = next(s for s in self.sweeps.values() if s.id == variables["id"])
            sweep.state = variables["state"]
            return {"upsertSweep": {"sweep": {"name": sweep.id}}}
        import yaml

        config = yaml.safe_load(variables["config"])
        violations = sweeps.schema_violations_from_proposed_config(config)
        if violations:
            raise WandbApiFailedError(
                "invalid sweep config",
                apb.ApiErrorResponse(message="; ".join(violations), http_status=400),
            )
        sweep_id = f"sw{next(self._ids):06d}"
        entity = variables["entityName"] or self.entity
        self.sweeps[sweep_id] = FakeSweep(
            sweep_id, entity, variables["projectName"], config, len(self.sweeps)
        )
        project = {
            "id": "p1",
            "name": variables["projectName"],
            "entity": {"id": "e1", "name": entity},
        }
        return {
            "upsertSweep": {
                "sweep": {"name": sweep_id, "project": project},
                "configValidationWarnings": [],
            }
        }

    def _sweep(self, variables: dict[str, Any], name_key: str) -> FakeSweep | None:
        sweep = self.sweeps.get(variables[name_key])
        if sweep is None or (variables.get("entity"), variables.get("project")) != (
            sweep.entity,
            sweep.project,
        ):
            return None
        return sweep

    def _gql_GetSweep(self, variables: dict[str, Any]) -> Any:
        sweep = self._sweep(variables, "name")
        if sweep is None:
            return {"project": None}
        import yaml

        return {
            "project": {
                "sweep": {
                    "__typename": "Sweep",
                    "id": f"U3dlZXA6{sweep.id}",
                    "name": sweep.id,
                    "displayName": sweep.config.get("name"),
                    "method": sweep.config["method"],
                    "state": sweep.state,
                    "description": None,
                    "bestLoss": None,
                    "config": yaml.safe_dump(sweep.config),
                    "createdAt": _CREATED.format(sweep.order),
                    "updatedAt": _CREATED.format(sweep.order),
                    "runCount": sum(1 for r in self.runs.values() if r.sweep_id == sweep.id),
                    "runCountExpected": None,
                }
            }
        }

    def _gql_SweepWithRuns(self, variables: dict[str, Any]) -> Any:
        sweep = self._sweep(variables, "sweep")
        if sweep is None:
            return {"project": None}
        import yaml

        return {
            "project": {
                "sweep": {
                    "id": sweep.id,
                    "name": sweep.id,
                    "state": sweep.state,
                    "config": yaml.safe_dump(sweep.config),
                    "runs": {"edges": []},
                }
            }
        }

    def _gql_CreateAgent(self, variables: dict[str, Any]) -> Any:
        assert variables["host"], "CreateAgent without a host"
        sweep = self.sweeps[variables["sweep"]]
        assert (variables["entityName"], variables["projectName"]) == (sweep.entity, sweep.project)
        agent_id = f"agent{next(self._ids):06d}"
        self.agents[agent_id] = sweep.id
        return {"createAgent": {"agent": {"id": agent_id}}}

    def _gql_Heartbeat(self, variables: dict[str, Any]) -> Any:
        sweep = self.sweeps[self.agents[variables["id"]]]
        running = list(json.loads(variables["runState"]))
        commands = self._commands(sweep, running)
        return {
            "agentHeartbeat": {"agent": {"id": variables["id"]}, "commands": json.dumps(commands)}
        }

    def _gql_Runs(self, variables: dict[str, Any]) -> Any:
        filters = json.loads(variables.get("filters") or "{}")
        uploaded = self.uploaded()
        nodes = [
            self._run_node(run, uploaded[run.id])
            for run in sorted(self.runs.values(), key=lambda r: r.order)
            if run.id in uploaded and ("sweep" not in filters or run.sweep_id == filters["sweep"])
        ]
        return {
            "project": {
                "internalId": "p1",
                "runCount": len(nodes),
                "readOnly": False,
                "runs": {
                    "edges": [{"node": n, "cursor": n["name"]} for n in nodes],
                    "pageInfo": {"endCursor": None, "hasNextPage": False},
                },
            }
        }

    def _gql_Run(self, variables: dict[str, Any]) -> Any:
        run = self.runs.get(variables["name"])
        uploaded = self.uploaded().get(variables["name"])
        if run is None or uploaded is None:
            return {"project": {"run": None}}
        return {"project": {"run": self._run_node(run, uploaded)}}

    def _gql_RunHistoryKeys(self, variables: dict[str, Any]) -> Any:
        uploaded = self.uploaded().get(variables["name"])
        last = len(uploaded.history) - 1 if uploaded else -1
        return {"project": {"run": {"historyKeys": {"lastStep": last, "keys": {}}}}}

    def _run_node(self, run: FakeRun, uploaded: Uploaded) -> dict[str, Any]:
        return {
            "projectId": 1,
            "id": f"UnVu{run.id}",
            "tags": [],
            "name": run.id,
            "displayName": run.id,
            "sweepName": run.sweep_id,
            "state": uploaded.state,
            "config": json.dumps(
                {k: {"value": v, "desc": None} for k, v in uploaded.config.items()}
            ),
            "group": run.sweep_id,
            "jobType": "sweep",
            "commit": None,
            "readOnly": False,
            "createdAt": _CREATED.format(run.order),
            "heartbeatAt": _CREATED.format(run.order),
            "description": None,
            "notes": None,
            "systemMetrics": "{}",
            "summaryMetrics": json.dumps(uploaded.summary),
            "historyLineCount": len(uploaded.history),
            "user": {"name": "u", "username": "u"},
            "historyKeys": {"lastStep": len(uploaded.history) - 1, "keys": {}},
        }

    # -- history scans (wandb-core's ReadRunHistory API) ------------------------------

    def _history_scan(self, request: apb.ReadRunHistoryRequest) -> apb.ApiResponse:
        response = apb.ApiResponse()
        kind = request.WhichOneof("request")
        if kind == "scan_run_history_init":
            scan_id = next(self._ids)
            uploaded = self.uploaded().get(request.scan_run_history_init.run_id)
            self._scans[scan_id] = uploaded.history if uploaded else []
            response.read_run_history_response.scan_run_history_init.request_id = scan_id
        elif kind == "scan_run_history":
            page = request.scan_run_history
            rows = self._scans[page.request_id][page.min_step : page.max_step]
            history = response.read_run_history_response.run_history
            for step, row in enumerate(rows, start=page.min_step):
                items = history.history_rows.add().history_items
                for key, value in {**row, "_step": step}.items():
                    items.add(key=key, value_json=json.dumps(value))
        else:
            raise AssertionError(f"the fake does not answer history request {kind}")
        return response

    # -- the controller ---------------------------------------------------------------

    def _commands(self, sweep: FakeSweep, running: list[str]) -> list[dict[str, Any]]:
        if sweep.state in ("CANCELED", "FINISHED"):
            return [{"type": "stop", "run_id": r} for r in running] + [{"type": "exit"}]
        if sweep.state == "PAUSED":
            return []
        if running:
            return self._stops(sweep, running)
        uploaded = self.uploaded()
        for run in sorted(self.runs.values(), key=lambda r: r.order):
            done = uploaded.get(run.id)
            if (
                run.sweep_id == sweep.id
                and done is not None
                and done.state == "preempted"
                and run.resumed_after < done.segments
            ):
                run.resumed_after = done.segments
                return [{"type": "resume", "run_id": run.id, "args": run.args}]
        cap = sweep.config.get("run_cap")
        count = sum(1 for r in self.runs.values() if r.sweep_id == sweep.id)
        suggestion = None
        if cap is None or count < cap:
            suggestion = sweeps.next_run(sweep.config, self._engine_runs(sweep))
        if suggestion is None:
            sweep.state = "FINISHED"
            return [{"type": "exit"}]
        run_id = f"run{next(self._ids):05d}"
        args = dict(suggestion.config)
        self.runs[run_id] = FakeRun(run_id, sweep.id, args, len(self.runs))
        return [{"type": "run", "run_id": run_id, "args": args, "program": None}]

    def _engine_runs(self, sweep: FakeSweep) -> list[sweeps.SweepRun]:
        metric = sweep.config["metric"]["name"]
        uploaded = self.uploaded()
        runs = []
        for run in self.runs.values():
            if run.sweep_id != sweep.id:
                continue
            done = uploaded.get(run.id, Uploaded(state="pending"))
            values = [row[metric] for row in done.history if metric in row]
            state = "running" if done.state == "preempted" else done.state
            runs.append(
                sweeps.SweepRun(
                    name=run.id,
                    state=sweeps.RunState(state),
                    config=run.args,
                    summary_metrics={metric: values[-1]} if values else {},
                    history=done.history,
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

    # -- runs as wandb uploaded them ---------------------------------------------------

    def run_files(self) -> dict[str, list[list[Any]]]:
        """Each run id's `.wandb` files (oldest first), as lists of wandb `Record`s."""
        found: dict[str, list[tuple[float, list[Any]]]] = {}
        for path in self.runs_dir.rglob("run-*.wandb"):
            records = list(runfile.records(path))
            run = next((r.run for r in records if r.WhichOneof("record_type") == "run"), None)
            if run is not None:
                found.setdefault(run.run_id, []).append((path.stat().st_mtime_ns, records))
        return {
            k: [records for _, records in sorted(v, key=lambda t: t[0])] for k, v in found.items()
        }

    def uploaded(self) -> dict[str, Uploaded]:
        """What the server holds per run id, from the runs' files."""
        result: dict[str, Uploaded] = {}
        for run_id, files in self.run_files().items():
            held = result[run_id] = Uploaded()
            for records in files:
                held.segments += 1
                held.state, preempting = "running", False
                for record in records:
                    kind = record.WhichOneof("record_type")
                    if kind == "run":
                        held.sweep_id = record.run.sweep_id
                        _update(held.config, record.run.config.update)
                    elif kind == "config":
                        _update(held.config, record.config.update)
                    elif kind == "summary":
                        _update(held.summary, record.summary.update)
                    elif kind == "history":
                        held.history.append(_items(record.history.item))
                    elif kind == "preempting":
                        preempting = True
                    elif kind == "exit":
                        code = record.exit.exit_code
                        held.state = (
                            "finished" if code == 0 else "preempted" if preempting else "failed"
                        )
        return result


def _items(items: Any) -> dict[str, Any]:
    """wandb's key/value items as a dict, without wandb's own underscore keys."""
    found = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        if not key.startswith("_"):
            found[key] = json.loads(item.value_json)
    return found


def _update(target: dict[str, Any], items: Any) -> None:
    target.update(_items(items))


KEY = "k" * 30 + "SECRETKEY" + "0" * 5


@pytest.fixture(autouse=True)
def fresh_wandb_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb's settings (read from the environment once per process) and session
    credentials, fresh for this test: import this fixture into a test module that logs in."""
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib.wbauth import authenticate

    monkeypatch.setattr(wandb_setup.singleton(), "_settings", None)
    monkeypatch.setattr(authenticate, "_session_auth", None)


def serve(monkeypatch: pytest.MonkeyPatch, runs_dir: Path) -> FakeWandb:
    """A FakeWandb under wandb's client for this test, logged in with `KEY`.

    Online, `run.log` streams and `run.finish()` returns once the server has the run.
    Offline, wandb-core writes the `.wandb` file a moment later; `run.log` and `run.finish`
    are wrapped to return once their records are in the file, so the fake server has them
    as a real one would.
    """
    from wandb.sdk import wandb_run, wandb_setup

    monkeypatch.setenv("WANDB_API_KEY", KEY)
    # wandb-core flushes a run's file every 15 s by default; at once here.
    monkeypatch.setenv("WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL", "0.001")
    monkeypatch.setattr(wandb_setup.singleton(), "_settings", None)  # read the two above
    log, finish = wandb_run.Run.log, wandb_run.Run.finish

    def logged(self: Any, *args: Any, **kwargs: Any) -> None:
        path = Path(self.settings.sync_file)
        before = _count(path, "history")
        log(self, *args, **kwargs)
        wait_for_records(path, "history", before + 1)

    def finished(self: Any, *args: Any, **kwargs: Any) -> None:
        path = Path(self.settings.sync_file)
        finish(self, *args, **kwargs)
        wait_for_records(path, "exit", 1)

    monkeypatch.setattr(wandb_run.Run, "log", logged)
    monkeypatch.setattr(wandb_run.Run, "finish", finished)
    return FakeWandb(runs_dir).install(monkeypatch)


def _count(path: Path, kind: str) -> int:
    return sum(1 for r in runfile.records(path) if r.WhichOneof("record_type") == kind)


def wait_for_records(path: Path, kind: str, count: int) -> None:
    """Block until wandb-core wrote `count` records of `kind` to the run's file."""
    deadline = time.monotonic() + 60
    while _count(path, kind) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"wandb-core never wrote {kind} #{count} to {path}")
        time.sleep(0.005)
