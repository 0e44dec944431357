"""The W&B backend: sweeps on a W&B server, runs handed out by W&B's controller.

`create_sweep` registers the spec with `wandb.sweep` (after `sweeper.spec.load_spec`
validated it) and records a reference (entity, project, id, url) in the local store, so
`ls`, `status`, `agent` and `report` find it as the current sweep.

Runs are claimed through the agent API that `wandb.agent` itself uses: each worker is
a registered W&B agent, and `claim_run` heartbeats it until W&B's controller answers
with a `run` command (its config, chosen by W&B's bayes/random/grid search). That keeps
the supervisor, its GPU slots, heartbeats, signals and OOM handling the same code for
both backends. The claim is recorded in the local store (`wandb_runs`), which is what
makes a claim compare-and-set between the processes of one host; W&B's controller makes
it unique between hosts. Epochs are logged to the W&B run (`wandb.init(id=run_id)` in
the worker) and every heartbeat relays W&B's `stop` commands (hyperband) as
`Control.stop`. A run that ends badly is finished on the server with a non-zero exit code,
never left "running".

Reads (`status`, `report`) come from `wandb.Api()` (paged), cached for a few seconds
so a report build or the agent's live table does not query the server per row.

Every server call goes through `_Retry`: timeouts, connection errors and HTTP 429/5xx
are retried with jittered exponential backoff until `SWEEPER_WANDB_TIMEOUT` seconds
(default 60) have passed, then end in a `BackendError`. The API key is redacted from
every message this module raises or logs.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
import random
import re
import socket
import sqlite3
import string
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field

from sweeper import engine
from sweeper.backends.base import Backend
from sweeper.backends.ledger import FINAL_SWEEP_STATES, Ended, RunLedger
from sweeper.errors import BackendError, NotFoundError, SweeperError, did_you_mean
from sweeper.models import Claim, Control, Run, RunState, Sweep, SweepState
from sweeper.paths import Home
from sweeper.spec import SweepSpec, flatten_config, parse_spec
from sweeper.store import SQLiteStore, Store

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds a W&B call may keep failing (timeouts, 429, 5xx) before it is given up.
TIMEOUT_ENV = "SWEEPER_WANDB_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
#: The project sweeps go to when neither --project, WANDB_PROJECT nor the spec names one.
DEFAULT_PROJECT = "sweeper"
#: W&B's own default server (wandb.sdk.lib.urls.DEFAULT_BASE_URL); WANDB_BASE_URL overrides it.
DEFAULT_BASE_URL = "https://api.wandb.ai"
#: Seconds `list_runs` answers from its cache (the agent's table refreshes every second).
RUNS_CACHE_S = 5.0
#: Set to 1 to upload each finished run's best checkpoint as a W&B model artifact.
CHECKPOINTS_ENV = "SWEEPER_WANDB_CHECKPOINTS"

LOGIN_HELP = (
    "Log in with `wandb login` (it stores the key in ~/.netrc) or set WANDB_API_KEY "
    "(https://wandb.ai/authorize), or use --backend local."
)

_ID_ALPHABET = string.ascii_lowercase + string.digits
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_ALLOWED = {
    SweepState.running: {SweepState.paused, SweepState.canceled, SweepState.finished},
    SweepState.paused: {SweepState.running, SweepState.canceled, SweepState.finished},
}
#: W&B sweep states (upper case on the server) as ours.
_SWEEP_STATES = {
    "RUNNING": SweepState.running,
    "PENDING": SweepState.running,
    "PAUSED": SweepState.paused,
    "CANCELED": SweepState.canceled,
    "FINISHED": SweepState.finished,
    "FAILED": SweepState.finished,
    "CRASHED": SweepState.finished,
}
_TO_WANDB_STATE = {
    SweepState.running: "RUNNING",
    SweepState.paused: "PAUSED",
    SweepState.canceled: "CANCELED",
    SweepState.finished: "FINISHED",
}
#: W&B run states as ours; `sweeper_state` in the summary refines them (see `_run_state`).
_RUN_STATES = {
    "running": RunState.running,
    "pending": RunState.pending,
    "preempting": RunState.pending,
    "preempted": RunState.pending,
    "finished": RunState.finished,
    "crashed": RunState.crashed,
    "failed": RunState.failed,
    "killed": RunState.stopped,
}
#: Summary keys sweeper writes next to the trainer's result.
STATE_KEY = "sweeper_state"
REASON_KEY = "sweeper_reason"
_SWEEP_CONTROL = {SweepState.paused: Control.pause, SweepState.canceled: Control.cancel}


# --- credentials and redaction ---------------------------------------------------------


def base_url() -> str:
    """The W&B server: $WANDB_BASE_URL, else api.wandb.ai."""
    return (os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def api_key() -> str | None:
    """The API key wandb would use: $WANDB_API_KEY, else `wandb login`'s netrc entry for
    the server's host; None when neither is configured.

    >>> os.environ.get("WANDB_API_KEY") is None or api_key() is not None
    True
    """
    key = os.environ.get("WANDB_API_KEY")
    if key:
        return key
    host = urllib.parse.urlparse(base_url()).hostname or ""
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry and entry[2] else None


def redact(text: str, key: str | None = None) -> str:
    """`text` with the API key (given, or the configured one) replaced by '***'.

    >>> redact("401 for key=abc123secret", "abc123secret")
    '401 for key=***'
    """
    key = key if key is not None else api_key()
    if not key:
        return text
    return text.replace(key, "***")


def require_key() -> str:
    """The configured API key, or a BackendError saying how to log in."""
    key = api_key()
    if key is None:
        raise BackendError(
            f"The wandb backend needs a W&B API key and none is configured. {LOGIN_HELP}"
        )
    return key


def timeout_s() -> float:
    """How long W&B calls are retried: $SWEEPER_WANDB_TIMEOUT seconds, default 60."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise SweeperError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise SweeperError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception from wandb or requests carries, if any."""
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("http_status", "status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and value:
                return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a timeout, a connection failure, HTTP 408/425/429 or a 5xx."""
    status = http_status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__
    return "Timeout" in name or "ConnectionError" in name


class _Retry:
    """Calls a W&B function, retrying transient failures with backoff until a deadline."""

    #: First backoff; doubled per try up to `max_delay_s`, jittered by ±50 %.
    base_delay_s = 0.5
    max_delay_s = 8.0

    def __init__(
        self,
        limit_s: float,
        host: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_s, self.host, self.sleep, self.clock = limit_s, host, sleep, clock

    def __call__(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        deadline = self.clock() + self.limit_s
        delay = self.base_delay_s
        tries = 0
        while True:
            tries += 1
            try:
                return fn(*args, **kwargs)
            except SweeperError:
                raise
            except Exception as exc:
                reason = redact(f"{type(exc).__name__}: {exc}")
                status = http_status(exc)
                if not is_transient(exc):
                    raise _permanent(what, status, reason) from None
                left = deadline - self.clock()
                if left <= 0:
                    raise BackendError(
                        f"W&B at {self.host} did not answer ({what}) within {self.limit_s:g} s "
                        f"after {tries} tries; last error: {reason}. Check the network and "
                        f"WANDB_BASE_URL, or allow more time with {TIMEOUT_ENV}=<seconds>."
                    ) from None
                log.warning("W&B %s failed (%s); retrying", what, reason)
                self.sleep(min(left, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, self.max_delay_s)


def _permanent(what: str, status: int | None, reason: str) -> SweeperError:
    if status in (401, 403):
        return BackendError(f"W&B refused the API key ({what}): {reason}. {LOGIN_HELP}")
    if status == 404:
        return NotFoundError(f"W&B does not know it ({what}): {reason}")
    return BackendError(f"W&B could not {what}: {reason}")


# --- the wandb client surface -------------------------------------------------------------


class SweepRecord(BaseModel):
    """A sweep as the W&B server describes it."""

    id: str
    name: str | None = None
    state: str = Field(description="RUNNING, PAUSED, CANCELED, FINISHED, ...")
    config: dict[str, Any]
    created_at: datetime | None = None


class RunRecord(BaseModel):
    """A run as the W&B server describes it."""

    id: str
    state: str = Field(description="running, finished, crashed, failed, killed, preempted, ...")
    config: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime | None = None


class SweepRef(BaseModel):
    """Where a sweep lives on W&B."""

    entity: str
    project: str
    id: str

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"


class WandbClient(Protocol):
    """The wandb calls the backend makes; `RealClient` makes them, tests use a fake."""

    def default_entity(self) -> str: ...

    def sweep_url(self, ref: SweepRef) -> str: ...

    def create_sweep(self, config: dict[str, Any], entity: str, project: str) -> str: ...

    def get_sweep(self, ref: SweepRef) -> SweepRecord: ...

    def set_sweep_state(self, ref: SweepRef, state: str) -> None: ...

    def list_runs(self, ref: SweepRef, with_history: bool) -> list[RunRecord]: ...

    def get_run(self, ref: SweepRef, run_id: str) -> RunRecord | None: ...

    def register_agent(self, ref: SweepRef, host: str) -> str: ...

    def agent_heartbeat(self, agent_id: str, running: list[str]) -> list[dict[str, Any]]: ...

    def log_epoch(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], metrics: dict[str, Any]
    ) -> None: ...

    def end_run(
        self,
        ref: SweepRef,
        run_id: str,
        config: dict[str, Any],
        summary: dict[str, Any],
        exit_code: int,
        preempted: bool = False,
    ) -> None: ...

    def log_checkpoint(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], path: Path
    ) -> None: ...


class RealClient:
    """`WandbClient` on the real wandb package: `wandb.sweep`, the agent API of
    `wandb.agent`, `wandb.init` per run and `wandb.Api()` for reads."""

    def __init__(self, wandb_dir: Path, timeout: float) -> None:
        import wandb

        self._wandb = wandb
        self.wandb_dir = wandb_dir
        self.timeout = timeout
        self._api: Any = None
        self._runs: dict[str, Any] = {}

    @property
    def api(self) -> Any:
        if self._api is None:
            # wandb's per-request timeout; our retry loop bounds the total.
            self._api = self._wandb.Api(timeout=max(1, int(min(self.timeout, 30))))
        return self._api

    def default_entity(self) -> str:
        return str(self.api.default_entity)

    def sweep_url(self, ref: SweepRef) -> str:
        app = self._wandb.util.app_url(base_url())
        quote = urllib.parse.quote
        return f"{app}/{quote(ref.entity)}/{quote(ref.project)}/sweeps/{quote(ref.id)}"

    def create_sweep(self, config: dict[str, Any], entity: str, project: str) -> str:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # wandb.sweep prints the id and URL
            return str(self._wandb.sweep(config, entity=entity, project=project))

    def get_sweep(self, ref: SweepRef) -> SweepRecord:
        sweep = self.api.sweep(ref.path)
        sweep.load(force=True)
        attrs = getattr(sweep, "_attrs", {})
        created = attrs.get("createdAt")
        return SweepRecord(
            id=ref.id,
            name=attrs.get("displayName") or sweep.config.get("name"),
            state=str(sweep.state),
            config=dict(sweep.config),
            created_at=_parse_time(created),
        )

    def set_sweep_state(self, ref: SweepRef, state: str) -> None:
        from wandb.apis.public.sweeps import _set_sweep_state

        _set_sweep_state(self.api, ref.id, state, entity=ref.entity, project=ref.project)  # type: ignore[arg-type]

    def list_runs(self, ref: SweepRef, with_history: bool) -> list[RunRecord]:
        runs = self.api.runs(
            f"{ref.entity}/{ref.project}",
            filters={"sweep": ref.id},
            order="+created_at",
            per_page=100,
            lazy=False,
        )
        return [self._record(run, with_history) for run in runs]

    def get_run(self, ref: SweepRef, run_id: str) -> RunRecord | None:
        try:
            run = self.api.run(f"{ref.entity}/{ref.project}/{run_id}")
        except Exception as exc:
            if http_status(exc) == 404 or "not found" in str(exc).lower():
                return None
            raise
        return self._record(run, with_history=True)

    @staticmethod
    def _record(run: Any, with_history: bool) -> RunRecord:
        history = list(run.scan_history(page_size=1000)) if with_history else []
        summary = dict(run.summary_metrics or {})
        return RunRecord(
            id=run.id,
            state=str(run.state),
            config=dict(run.config),
            summary=summary,
            history=history,
            created_at=_parse_time(getattr(run, "created_at", None)),
        )

    def register_agent(self, ref: SweepRef, host: str) -> str:
        from wandb.apis.public.sweeps import _register_agent

        agent = _register_agent(
            self.api, host, sweep_id=ref.id, entity=ref.entity, project=ref.project
        )
        return str(agent["id"])

    def agent_heartbeat(self, agent_id: str, running: list[str]) -> list[dict[str, Any]]:
        from wandb.apis.public.sweeps import _agent_heartbeat

        return list(_agent_heartbeat(self.api, agent_id, {}, {run_id: True for run_id in running}))

    def _open(self, ref: SweepRef, run_id: str, config: dict[str, Any]) -> Any:
        run = self._runs.get(run_id)
        if run is None:
            self.wandb_dir.mkdir(parents=True, exist_ok=True)
            run = self._wandb.init(
                id=run_id,
                entity=ref.entity,
                project=ref.project,
                group=ref.id,
                job_type="sweep",
                config=config,
                resume="allow",
                reinit="create_new",
                dir=str(self.wandb_dir),
                settings=self._wandb.Settings(sweep_id=ref.id, silent=True),
            )
            self._runs[run_id] = run
        return run

    def log_epoch(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], metrics: dict[str, Any]
    ) -> None:
        # No explicit step: a re-queued run resumes the same W&B run and logs its epochs
        # again; `_history` keeps the last row per epoch.
        self._open(ref, run_id, config).log(metrics)

    def end_run(
        self,
        ref: SweepRef,
        run_id: str,
        config: dict[str, Any],
        summary: dict[str, Any],
        exit_code: int,
        preempted: bool = False,
    ) -> None:
        run = self._open(ref, run_id, config)
        run.summary.update(summary)
        if preempted:
            run.mark_preempting()
        self._runs.pop(run_id, None)
        run.finish(exit_code=exit_code)

    def log_checkpoint(
        self, ref: SweepRef, run_id: str, config: dict[str, Any], path: Path
    ) -> None:
        artifact = self._wandb.Artifact(f"model-{run_id}", type="model")
        artifact.add_file(str(path), name=path.name)
        self._open(ref, run_id, config).log_artifact(artifact)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# --- the backend --------------------------------------------------------------------------


def new_run_id() -> str:
    """A W&B-style run id: 8 lowercase letters and digits.

    >>> len(new_run_id())
    8
    """
    return "".join(random.SystemRandom().choice(_ID_ALPHABET) for _ in range(8))


#: The bookkeeping of this host's claims in `wandb_runs`.
_RUNS = RunLedger("wandb_runs", "claimed on this host", new_run_id)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def _dumps(value: Any) -> str:
    return json.dumps(engine.plain(value))


class WandbBackend(Backend):
    """Sweeps on W&B; references and this host's claims in `home`'s store.

    Args:
        home: where the store and the wandb run folders live.
        client: the wandb surface (default: the real wandb package, which needs an API key).
        entity, project: where new sweeps go (default: WANDB_ENTITY / WANDB_PROJECT as
            wandb reads them, else your default entity and the spec's `project` or 'sweeper').
        sleep, clock: how retries wait and tell time (tests pass a fake clock).
    """

    name = "wandb"

    def __init__(
        self,
        home: Home | None = None,
        client: WandbClient | None = None,
        entity: str | None = None,
        project: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home = home or Home()
        self.store = SQLiteStore(self.home.store_path)
        self.entity, self.project = entity, project
        host = urllib.parse.urlparse(base_url()).netloc or base_url()
        self._retry = _Retry(timeout_s(), host, sleep, clock)
        if client is None:
            require_key()
            try:
                client = RealClient(self.home.wandb_dir, self._retry.limit_s)
            except Exception as exc:  # wandb fails to import or start: a backend problem
                raise BackendError(f"wandb cannot start: {redact(str(exc))}") from None
        self.client = client
        self._cache: dict[tuple[str, bool], tuple[float, list[Run]]] = {}
        self._records: dict[str, tuple[float, SweepRecord]] = {}
        self._specs: dict[str, SweepSpec] = {}

    # -- sweeps --------------------------------------------------------------------

    def create_sweep(self, spec: SweepSpec, name: str | None = None) -> Sweep:
        """Register `spec` with `wandb.sweep` and record it here as the current sweep."""
        config = dict(spec.raw)
        config["name"] = name or spec.name or config.get("name") or "sweeper"
        entity = (
            self.entity
            or os.environ.get("WANDB_ENTITY")
            or self._retry("read your default entity", self.client.default_entity)
        )
        project = (
            self.project
            or os.environ.get("WANDB_PROJECT")
            or str(config.get("project") or DEFAULT_PROJECT)
        )
        sweep_id = self._retry(
            "create the sweep", self.client.create_sweep, config, entity, project
        )
        ref = SweepRef(entity=entity, project=project, id=sweep_id)
        url = self.client.sweep_url(ref)
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO wandb_sweeps (id, entity, project, url, name, spec, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sweep_id, entity, project, url, config["name"], _dumps(config), now),
            )
            _set_current(conn, sweep_id)
        record = SweepRecord(id=sweep_id, name=config["name"], state="RUNNING", config=config)
        self._records[sweep_id] = (time.monotonic(), record)
        return self._to_sweep(self._ref_row(sweep_id), record, counts={})

    def list_sweeps(self) -> list[Sweep]:
        """Every W&B sweep recorded here, newest first, with its state from the server."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM wandb_sweeps ORDER BY created_at DESC, rowid DESC"
            ).fetchall()
        return [self._sweep(row) for row in rows]

    def get_sweep(self, ref: str) -> Sweep:
        """The sweep whose id, unique name or id prefix is `ref`, or a W&B path
        'entity/project/sweep_id' (recorded here, so agents on another host can join)."""
        return self._sweep(self._resolve(ref))

    def set_sweep_state(self, sweep_id: str, state: SweepState) -> Sweep:
        """Pause, resume, cancel or finish the sweep on W&B; canceled and finished are final."""
        state = SweepState(state)
        row = self._ref_row(sweep_id)
        current = self._sweep(row, fresh=True)
        if state != current.state:
            if state not in _ALLOWED.get(current.state, set()):
                raise SweeperError(
                    f"sweep {sweep_id} is {current.state.value}, so it cannot become {state.value}"
                    + (
                        ": canceled and finished sweeps are final."
                        if current.state in FINAL_SWEEP_STATES
                        else "."
                    )
                )
            self._retry(
                f"set sweep {sweep_id} {state.value}",
                self.client.set_sweep_state,
                _ref(row),
                _TO_WANDB_STATE[state],
            )
            self._records.pop(sweep_id, None)
            if state in FINAL_SWEEP_STATES:
                with self.store.transaction(immediate=True) as conn:
                    _RUNS.stop_pending(conn, sweep_id, state, time.time())
        self._cache.clear()
        return self._sweep(row, fresh=True)

    # -- claiming ------------------------------------------------------------------

    def claim_run(self, sweep_id: str, worker: str, lease_s: float = 60.0) -> Claim:
        """A run queued on this host first; else ask W&B's controller, as `worker`'s agent."""
        row = self._ref_row(sweep_id)
        state = self._record_state(row, fresh=True)
        if state != SweepState.running:
            return Claim(run=None, done=True, reason=f"sweep {state.value}")
        self.reap_stale()
        claimed = self._claim_pending(sweep_id, worker, lease_s)
        if claimed is not None:
            return Claim(run=claimed)
        agent_id = self._agent(row, worker)
        commands = self._retry(
            "ask W&B for the next run", self.client.agent_heartbeat, agent_id, []
        )
        exit_reason = self._queue_commands(sweep_id, commands, agent_id)
        claimed = self._claim_pending(sweep_id, worker, lease_s, agent_id=agent_id)
        if claimed is not None:
            return Claim(run=claimed)
        if exit_reason is not None:
            return Claim(run=None, done=True, reason=exit_reason)
        return Claim(run=None, done=False, reason="W&B's controller has no run for this agent yet")

    def _agent(self, row: sqlite3.Row, worker: str) -> str:
        """The W&B agent id of `worker` on this sweep, registered on first use."""
        with self.store.transaction() as conn:
            found = conn.execute(
                "SELECT agent_id FROM wandb_agents WHERE sweep_id = ? AND worker = ?",
                (row["id"], worker),
            ).fetchone()
        if found is not None:
            return str(found["agent_id"])
        host = socket.gethostname()
        agent_id = self._retry("register an agent", self.client.register_agent, _ref(row), host)
        with self.store.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO wandb_agents (sweep_id, worker, agent_id) VALUES (?, ?, ?)",
                (row["id"], worker, agent_id),
            )
        return agent_id

    def _queue_commands(
        self, sweep_id: str, commands: Iterable[Mapping[str, Any]], agent_id: str
    ) -> str | None:
        """Queue W&B's run/resume commands as pending runs; return why W&B says exit, if it does."""
        exit_reason = None
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            for command in commands:
                kind = command.get("type")
                if kind in ("run", "resume") and command.get("run_id"):
                    config = flatten_config(command.get("args") or {})
                    conn.execute(
                        "INSERT OR IGNORE INTO wandb_runs (id, sweep_id, state, config, agent_id, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            str(command["run_id"]),
                            sweep_id,
                            RunState.pending.value,
                            _dumps(config),
                            agent_id,
                            now,
                        ),
                    )
                elif kind == "exit":
                    exit_reason = "W&B's controller has no more runs for this sweep"
        return exit_reason

    def _claim_pending(
        self, sweep_id: str, worker: str, lease_s: float, agent_id: str | None = None
    ) -> Run | None:
        """Claim the oldest pending run (this agent's own first) in one transaction."""
        with self.store.transaction(immediate=True) as conn:
            run_id = _RUNS.claim_pending(
                conn, sweep_id, worker, lease_s, time.time(), prefer=("agent_id", agent_id)
            )
            if run_id is None:
                return None
            row = _RUNS.row(conn, run_id)
        self._cache.clear()
        return _RUNS.to_run(row, [])

    # -- reporting -----------------------------------------------------------------

    def log_epoch(self, run_id: str, worker: str, metrics: dict[str, Any]) -> Control:
        """Log the epoch to the W&B run, heartbeat the agent, relay W&B's stop command."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return Control.lost
            ref_row = self._ref_row(row["sweep_id"])
            epoch = int(metrics.get("epoch", row["epochs"] + 1))
            best = engine.better(
                row["metric"], metrics.get(self._metric(ref_row)[0]), self._metric(ref_row)[1]
            )
            conn.execute(
                "UPDATE wandb_runs SET metric = ?, epochs = ?, heartbeat_at = ? WHERE id = ?",
                (best, max(epoch, row["epochs"]), now, run_id),
            )
        self._retry(
            f"log epoch {epoch} of run {run_id}",
            self.client.log_epoch,
            _ref(ref_row),
            run_id,
            json.loads(row["config"]),
            metrics,
        )
        self._cache.clear()
        return self._control(row, ref_row, worker)

    def heartbeat(self, run_id: str, worker: str) -> Control:
        """Refresh the lease and heartbeat W&B's agent; relay stop, pause and cancel."""
        with self.store.transaction(immediate=True) as conn:
            row = _RUNS.beat(conn, run_id, worker, time.time())
            if row is None:
                return Control.lost
            ref_row = self._ref_row(row["sweep_id"])
        return self._control(row, ref_row, worker)

    def _control(self, row: sqlite3.Row, ref_row: sqlite3.Row, worker: str) -> Control:
        run_id = row["id"]
        agent_id = row["agent_id"] or self._agent(ref_row, worker)
        commands = self._retry(
            "heartbeat the agent", self.client.agent_heartbeat, agent_id, [run_id]
        )
        self._queue_commands(row["sweep_id"], commands, agent_id)
        # W&B also sends `stop` for the runs of a canceled sweep: the sweep's state says why.
        sweep_control = _SWEEP_CONTROL.get(self._record_state(ref_row), Control.proceed)
        if sweep_control != Control.proceed:
            return sweep_control
        if any(c.get("type") == "stop" and c.get("run_id") == run_id for c in commands):
            rule = (self._spec(ref_row).early_terminate or {}).get("type", "early_terminate")
            with self.store.transaction(immediate=True) as conn:
                kept = _RUNS.mark_stopping(conn, run_id, worker, f"stopped by W&B's {rule}")
            return Control.stop if kept else Control.lost
        return Control.proceed

    def finish_run(
        self,
        run_id: str,
        worker: str,
        summary: dict[str, Any],
        state: RunState = RunState.finished,
        reason: str | None = None,
    ) -> bool:
        """End the run as finished or stopped, here and on W&B (exit code 0)."""
        state = RunLedger.finish_state(state)
        with self.store.transaction(immediate=True) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            ref_row = self._ref_row(row["sweep_id"])
            metric = self._metric(ref_row)
            ended = _RUNS.finish(conn, row, summary, state, reason, metric, time.time())
        self._log_checkpoint(row, ref_row, summary.get("checkpoint_path"))
        self._end_on_server(ended, ref_row, 0, summary)
        return True

    def fail_run(self, run_id: str, worker: str, error: str, crashed: bool = False) -> bool:
        """End the run as failed, or crashed with its config queued again (as a new W&B run);
        on W&B it is finished with exit code 1."""
        with self.store.transaction(immediate=True) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            ref_row = self._ref_row(row["sweep_id"])
            ended = _RUNS.fail(conn, row, error, time.time(), crashed)
        self._end_on_server(ended, ref_row, 1)
        return True

    def requeue_run(self, run_id: str, worker: str, reason: str) -> bool:
        """Put the run back to pending here; on W&B it is marked preempted (exit code 1),
        and the next claim on this host resumes the same W&B run."""
        with self.store.transaction() as conn:
            sweep_id = _RUNS.row(conn, run_id)["sweep_id"]
        # Read before the write transaction: the server call must not hold the store's lock.
        sweep_state = self._record_state(self._ref_row(sweep_id))
        with self.store.transaction(immediate=True) as conn:
            row = _RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            ref_row = self._ref_row(row["sweep_id"])
            ended = _RUNS.requeue(conn, row, reason, sweep_state, time.time())
        queued = ended.state == RunState.pending
        self._end_on_server(ended, ref_row, 1 if queued else 0, preempted=queued)
        return True

    def reap_stale(self) -> list[Run]:
        """Crash (and re-queue) this host's running runs whose heartbeat is older than their lease."""
        with self.store.transaction(immediate=True) as conn:
            reaped = [
                (ended, self._ref_row(ended.row["sweep_id"]))
                for ended in _RUNS.reap(conn, time.time())
            ]
        for ended, ref_row in reaped:
            try:
                self._end_on_server(ended, ref_row, 1)
            except SweeperError as exc:  # the run stays crashed here; W&B times it out itself
                log.warning("could not mark run %s crashed on W&B: %s", ended.row["id"], exc)
        return [self.get_run(ended.row["id"]) for ended, _ in reaped]

    def _log_checkpoint(self, row: sqlite3.Row, ref_row: sqlite3.Row, path: Any) -> None:
        """Upload the run's checkpoint as an artifact when $SWEEPER_WANDB_CHECKPOINTS asks."""
        if os.environ.get(CHECKPOINTS_ENV, "").lower() not in ("1", "true", "yes"):
            return
        if not isinstance(path, str) or not Path(path).is_file():
            return
        self._retry(
            f"upload the checkpoint of run {row['id']}",
            self.client.log_checkpoint,
            _ref(ref_row),
            row["id"],
            json.loads(row["config"]),
            Path(path),
        )

    def _end_on_server(
        self,
        ended: Ended,
        ref_row: sqlite3.Row,
        exit_code: int,
        summary: Mapping[str, Any] | None = None,
        preempted: bool = False,
    ) -> None:
        """End the W&B run with `summary` and how it ended here (state and reason)."""
        self._cache.clear()
        row = ended.row
        self._retry(
            f"end run {row['id']}",
            self.client.end_run,
            _ref(ref_row),
            row["id"],
            json.loads(row["config"]),
            engine.plain(
                {**(summary or {}), STATE_KEY: ended.state.value, REASON_KEY: ended.reason}
            ),
            exit_code,
            preempted,
        )

    # -- reading runs --------------------------------------------------------------

    def list_runs(self, sweep_id: str, with_history: bool = True) -> list[Run]:
        """Every run of the sweep, oldest first: W&B's runs (paged), with this host's
        claims and queued runs merged in. Cached for a few seconds."""
        cached = self._cache.get((sweep_id, with_history))
        if cached is not None and time.monotonic() - cached[0] < RUNS_CACHE_S:
            return cached[1]
        ref_row = self._ref_row(sweep_id)
        records = self._retry(
            f"list the runs of sweep {sweep_id}", self.client.list_runs, _ref(ref_row), with_history
        )
        with self.store.transaction() as conn:
            local = {
                r["id"]: r
                for r in conn.execute(
                    "SELECT * FROM wandb_runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,)
                )
            }
        runs = [self._merge(ref_row, local.pop(record.id, None), record) for record in records]
        runs += [self._merge(ref_row, row, None) for row in local.values()]
        runs.sort(key=lambda r: r.created_at)
        self._cache[(sweep_id, with_history)] = (time.monotonic(), runs)
        return runs

    def get_run(self, run_id: str) -> Run:
        """One run with its history: this host's record merged with W&B's."""
        with self.store.transaction() as conn:
            row = conn.execute("SELECT * FROM wandb_runs WHERE id = ?", (run_id,)).fetchone()
            refs = (
                [self._ref_row(row["sweep_id"])]
                if row is not None
                else conn.execute("SELECT * FROM wandb_sweeps ORDER BY created_at DESC").fetchall()
            )
        for ref_row in refs:
            record = self._retry(f"read run {run_id}", self.client.get_run, _ref(ref_row), run_id)
            if record is not None or row is not None:
                return self._merge(ref_row, row, record)
        raise NotFoundError(f"no run with id {run_id!r} in the W&B sweeps recorded here")

    def close(self) -> None:
        """Close this process's store connections."""
        self.store.close()

    # -- helpers -------------------------------------------------------------------

    def _merge(
        self, ref_row: sqlite3.Row, row: sqlite3.Row | None, record: RunRecord | None
    ) -> Run:
        """A Run from this host's row (authoritative for state, it ends runs first) and the
        server's record (authoritative for history and summary)."""
        history = _history(record.history) if record is not None else []
        if row is None:
            assert record is not None
            name, goal = self._metric(ref_row)
            summary = _summary(record.summary)
            best = None
            for epoch in history:
                best = engine.better(best, epoch.get(name), goal)
            created = record.created_at or datetime.now(timezone.utc)
            return Run(
                id=record.id,
                sweep_id=ref_row["id"],
                state=_run_state(record),
                config=flatten_config(record.config),
                metric=best if best is not None else engine.better(None, summary.get(name), goal),
                epochs=len(history),
                history=history,
                summary=summary,
                reason=record.summary.get(REASON_KEY),
                created_at=created,
            )
        run = _RUNS.to_run(row, history)
        if record is not None and not run.summary:
            run.summary = _summary(record.summary)
        if history and run.state not in (RunState.pending,):
            run.epochs = max(run.epochs, len(history))
        return run

    def _sweep(self, row: sqlite3.Row, fresh: bool = False) -> Sweep:
        record = self._record(row, fresh)
        counts = Counter(r.state.value for r in self.list_runs(row["id"], with_history=False))
        return self._to_sweep(row, record, dict(counts))

    def _to_sweep(self, row: sqlite3.Row, record: SweepRecord, counts: dict[str, int]) -> Sweep:
        spec = self._spec(row)
        return Sweep(
            id=row["id"],
            name=row["name"],
            backend=self.name,
            state=_SWEEP_STATES.get(record.state.upper(), SweepState.running),
            method=spec.method,
            metric_name=spec.metric_name,
            metric_goal=spec.metric_goal,
            run_cap=spec.run_cap,
            spec=spec.raw,
            url=row["url"],
            created_at=record.created_at or _dt(row["created_at"]) or datetime.now(timezone.utc),
            run_counts=counts,
        )

    def _record(self, row: sqlite3.Row, fresh: bool = False) -> SweepRecord:
        cached = self._records.get(row["id"])
        if cached is not None and not fresh and time.monotonic() - cached[0] < RUNS_CACHE_S:
            return cached[1]
        record = self._retry(f"read sweep {row['id']}", self.client.get_sweep, _ref(row))
        self._records[row["id"]] = (time.monotonic(), record)
        return record

    def _record_state(self, row: sqlite3.Row, fresh: bool = False) -> SweepState:
        return _SWEEP_STATES.get(self._record(row, fresh).state.upper(), SweepState.running)

    def _spec(self, row: sqlite3.Row) -> SweepSpec:
        """The spec the sweep was registered with (kept here, so no server call), parsed once."""
        spec = self._specs.get(row["id"])
        if spec is None:
            config = {
                k: v
                for k, v in json.loads(row["spec"]).items()
                if k not in ("controller", "scheduler")
            }
            spec = self._specs[row["id"]] = parse_spec(
                json.dumps(config), source=f"W&B sweep {row['id']}"
            )
        return spec

    def _metric(self, row: sqlite3.Row) -> tuple[str, str]:
        spec = self._spec(row)
        return spec.metric_name, spec.metric_goal

    def _resolve(self, ref: str) -> sqlite3.Row:
        if ref.count("/") == 2:
            return self._adopt(ref)
        with self.store.transaction() as conn:
            rows = conn.execute("SELECT * FROM wandb_sweeps ORDER BY created_at, rowid").fetchall()
        for matches in (
            [r for r in rows if r["id"] == ref],
            [r for r in rows if r["name"] == ref],
            [r for r in rows if len(ref) >= 3 and r["id"].startswith(ref)],
        ):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                ids = ", ".join(r["id"] for r in matches)
                raise NotFoundError(
                    f"{ref!r} matches {len(matches)} W&B sweeps ({ids}); give the sweep id"
                )
        known = [r["id"] for r in rows] + [r["name"] for r in rows]
        raise NotFoundError(
            f"no W&B sweep {ref!r} recorded here{did_you_mean(ref, known)}; give it as "
            "entity/project/sweep_id to use a sweep created on another host"
        )

    def _adopt(self, path: str) -> sqlite3.Row:
        """Record the W&B sweep at 'entity/project/id' here (an agent host that did not create it)."""
        entity, project, sweep_id = path.split("/")
        ref = SweepRef(entity=entity, project=project, id=sweep_id)
        record = self._retry(f"read sweep {path}", self.client.get_sweep, ref)
        name = record.name or str(record.config.get("name") or sweep_id)
        with self.store.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO wandb_sweeps (id, entity, project, url, name, spec, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    entity,
                    project,
                    self.client.sweep_url(ref),
                    name,
                    _dumps(record.config),
                    time.time(),
                ),
            )
        self._records[sweep_id] = (time.monotonic(), record)
        return self._ref_row(sweep_id)

    def _ref_row(self, sweep_id: str) -> sqlite3.Row:
        # Inside another transaction this joins it (same thread, same connection).
        with self.store.transaction() as conn:
            row = conn.execute("SELECT * FROM wandb_sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no W&B sweep with id {sweep_id!r} recorded here")
        return row


def _ref(row: sqlite3.Row) -> SweepRef:
    return SweepRef(entity=row["entity"], project=row["project"], id=row["id"])


def _set_current(conn: sqlite3.Connection, sweep_id: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('current_sweep', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (sweep_id,),
    )


_EPOCH_KEYS = re.compile(r"^[A-Za-z]")


def _history(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch metrics from W&B history rows: wandb's `_step`-like keys dropped, the last
    row of each epoch kept (a resumed run logs its epochs again), in epoch order."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in rows:
        metrics = {k: v for k, v in row.items() if _EPOCH_KEYS.match(str(k)) and v is not None}
        epoch = metrics.get("epoch")
        if isinstance(epoch, int | float) and not isinstance(epoch, bool):
            by_epoch[int(epoch)] = metrics
    return [by_epoch[e] for e in sorted(by_epoch)]


def _summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in summary.items()
        if not str(k).startswith("_") and k not in (STATE_KEY, REASON_KEY)
    }


def _run_state(record: RunRecord) -> RunState:
    """W&B's state, refined by what sweeper wrote: W&B has no 'stopped', and a run sweeper
    ended as crashed shows as failed there (exit code 1)."""
    written = record.summary.get(STATE_KEY)
    state = _RUN_STATES.get(record.state.lower(), RunState.crashed)
    if (
        state in (RunState.finished, RunState.failed, RunState.pending)
        and written in RunState.__members__
    ):
        return RunState(written)
    return state


def recorded(store: Store, ref: str | None = None) -> bool:
    """Whether the store holds W&B sweep references: any at all, or one that `ref` names
    (by id, name or id prefix, as `WandbBackend.get_sweep` resolves it).

    Reads only the local store, so `sweeper` can pick the backend of a sweep offline.
    """
    with store.transaction() as conn:
        rows = conn.execute("SELECT id, name FROM wandb_sweeps").fetchall()
    if ref is None:
        return bool(rows)
    return any(
        r["id"] == ref or r["name"] == ref or (len(ref) >= 3 and r["id"].startswith(ref))
        for r in rows
    )
