"""The W&B backend: sweeps on a W&B server, runs handed out by W&B's controller.

`create_sweep` registers the spec with `wandb.sweep` (after `sweeper.spec.load_spec`
validated it) and records a reference (entity, project, id, url) in the local store, so
`ls`, `status`, `agent` and `report` find it as the current sweep.

Runs follow the protocol of `wandb.agent`, so the server's view is never contradicted:

- Each worker slot registers one W&B agent (CreateAgent) on first claim and keeps it for
  the agent process's life (worker names carry the supervisor's pid).
- A run trains only under a run id W&B's controller issued to that worker's agent (a
  `run` or `resume` command from Heartbeat); a worker claims only its own agent's runs.
  The claim is recorded in the local store (`wandb_runs`), which makes it compare-and-set
  between the processes of this host.
- A preempted run (SIGTERM, Ctrl-C, pause) and a crashed run (its worker died) are
  handed back to W&B: the W&B run is marked preempting and ends with exit code 1, and the
  row here waits, unclaimable, until W&B's controller issues it again as `resume` (same
  run id, to any agent, on any host). Nothing keeps it here to resume, so it never trains
  twice. A crashed run is handed back at most `MAX_CRASH_RETRIES` times, then fails.
- Every heartbeat relays W&B's `stop` commands (hyperband) as `Control.stop`; an `exit`
  during a run stops it the same way (W&B's agent kills its runs on exit) and ends the
  agent's claims. A paused sweep stops our agents (the supervisor stops on any sweep
  that is not running); W&B's own agent would idle instead.

Program sweeps (the user's own script, `sweeper.spec.program_layer`) follow the same
protocol; as under `wandb agent`, the script's own `wandb.init()` joins the run W&B issued
(`program_env`: the sweep's entity and project, the agent's wandb mode; the worker adds the
sweep id, run id and parameter file) and streams its history and summary itself, so this
backend neither logs epochs nor ends the W&B run of a script that finished on its own. It
ends only what the script cannot say: a run stopped, failed with a reason, handed back.

Reads (`status`, `report`) come from `wandb.Api()` (paged, fresh per read), cached here for
a few seconds so a report build or the agent's live table does not query the server per row.

Every server call goes through `sweeper.wandb.retry.Retry` (HTTP 429/5xx and timeouts
retried until `SWEEPER_WANDB_TIMEOUT`, through wandb's error wrapping); heartbeat failures
included, so an outage ends in a clear `BackendError` instead of "no run yet". The API
key is redacted from every message this module raises or logs.

The bookkeeping lives beside this module: `references` (the sweeps recorded here),
`issued_runs` (this host's agents and the runs W&B issued them), `records` (W&B's records
as sweeper's states).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sweeper import engine
from sweeper.backends.base import Backend
from sweeper.backends.ledger import FINAL_SWEEP_STATES, Ended, RunLedger, at
from sweeper.errors import BackendError, NotFoundError, SweeperError
from sweeper.models import (
    SWEEP_CONTROL,
    SWEEP_TRANSITIONS,
    Claim,
    Control,
    Run,
    RunState,
    Sweep,
    SweepState,
)
from sweeper.paths import Home
from sweeper.spec import SweepSpec
from sweeper.store import SQLiteStore
from sweeper.wandb import records, references
from sweeper.wandb.client import RealClient, RunRecord, SweepRecord, SweepRef
from sweeper.wandb.credentials import base_url, redact, require_credentials
from sweeper.wandb.issued_runs import RUNS, IssuedRuns, stop_reason
from sweeper.wandb.references import sweep_ref
from sweeper.wandb.retry import Retry, timeout_s

log = logging.getLogger(__name__)

#: The project sweeps go to when neither --project, WANDB_PROJECT nor the spec names one.
DEFAULT_PROJECT = "sweeper"
#: Seconds `list_runs` answers from its cache (the agent's table refreshes every second).
RUNS_CACHE_S = 5.0
#: Set to 1 to upload each finished run's best checkpoint as a W&B model artifact.
CHECKPOINTS_ENV = "SWEEPER_WANDB_CHECKPOINTS"
#: Least seconds between two heartbeats that a program's logged steps send W&B's controller
#: (`wandb agent` polls every 5 s; a script may log thousands of steps a second). The
#: worker's heartbeat thread beats on its own schedule.
PROGRAM_STEP_HEARTBEAT_S = 5.0


class WandbBackend(Backend):
    """Sweeps on W&B; references and this host's claims in `home`'s store.

    Args:
        home: where the store and the wandb run folders live.
        client: the wandb calls (default: a `RealClient`, which needs W&B credentials).
        entity, project: where new sweeps go (default: WANDB_ENTITY / WANDB_PROJECT as
            wandb reads them, else your default entity and the spec's `project` or 'sweeper').
        sleep, clock: how retries wait and tell time (tests pass a fake clock).
        now: the time in epoch seconds, for leases and timestamps (tests pass a fake).
    """

    name = "wandb"

    def __init__(
        self,
        home: Home | None = None,
        client: RealClient | None = None,
        entity: str | None = None,
        project: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.home = home or Home()
        self.now = now
        self.store = SQLiteStore(self.home.store_path)
        self.entity, self.project = entity, project
        self._retry = Retry(timeout_s(), base_url(), sleep, clock)
        if client is None:
            require_credentials()
            try:
                client = RealClient(self.home.wandb_dir, self._retry.limit_s)
            except Exception as exc:  # wandb fails to import or start: a backend problem
                raise BackendError(f"wandb cannot start: {redact(str(exc))}") from None
        self.client = client
        self._issued = IssuedRuns(self.store, client, self._retry, now)
        self._clock = clock
        self._cache: dict[tuple[str, bool], tuple[float, list[Run]]] = {}
        self._records: dict[str, tuple[float, SweepRecord]] = {}
        self._specs: dict[str, SweepSpec] = {}
        self._step_beats: dict[str, float] = {}

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
        kept = spec.model_copy(update={"raw": config, "name": config["name"]})
        url = self.client.sweep_url(ref)
        with self.store.transaction(immediate=True):  # the two writes below join it
            references.record(self.store, ref, url, kept, self.now())
            self.store.set_current(sweep_id)
        record = SweepRecord(id=sweep_id, name=config["name"], state="RUNNING", config=config)
        self._records[sweep_id] = (time.monotonic(), record)
        return self._to_sweep(references.find(self.store, sweep_id), record, counts={})

    def list_sweeps(self) -> list[Sweep]:
        """Every W&B sweep recorded here, newest first, with its state from the server."""
        return [self._sweep(row) for row in references.newest_first(self.store)]

    def get_sweep(self, ref: str) -> Sweep:
        """The sweep whose id, unique name or id prefix is `ref`, or a W&B path
        'entity/project/sweep_id' (recorded here, so agents on another host can join)."""
        row = self._adopt(ref) if ref.count("/") == 2 else references.resolve(self.store, ref)
        return self._sweep(row)

    def set_sweep_state(self, sweep_id: str, state: SweepState) -> Sweep:
        """Pause, resume, cancel or finish the sweep on W&B; canceled and finished are final."""
        state = SweepState(state)
        row = references.find(self.store, sweep_id)
        current = self._sweep(row, fresh=True)
        if state != current.state:
            if state not in SWEEP_TRANSITIONS.get(current.state, set()):
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
                sweep_ref(row),
                records.TO_WANDB_STATE[state],
            )
            self._records.pop(sweep_id, None)
            if state in FINAL_SWEEP_STATES:
                with self.store.transaction(immediate=True) as conn:
                    RUNS.stop_pending(conn, sweep_id, state, self.now())
        self._cache.clear()
        return self._sweep(row, fresh=True)

    # -- claiming ------------------------------------------------------------------

    def claim_run(self, sweep_id: str, worker: str, lease_s: float = 60.0) -> Claim:
        """A run W&B's controller issued to `worker`'s agent: one queued here by an earlier
        heartbeat, else the next `run`/`resume` command of a heartbeat now."""
        row = references.find(self.store, sweep_id)
        state = self._record_state(row, fresh=True)
        if state != SweepState.running:
            return Claim(run=None, done=True, reason=f"sweep {state.value}")
        self.reap_stale()
        agent_id = self._issued.agent(sweep_ref(row), worker)
        claimed = self._issued.claim(sweep_id, worker, lease_s, agent_id)
        if claimed is None:
            commands = self._retry(
                "ask W&B for the next run", self.client.agent_heartbeat, agent_id, []
            )
            exit_reason = self._issued.queue(sweep_id, commands, agent_id)
            claimed = self._issued.claim(sweep_id, worker, lease_s, agent_id)
            if claimed is None:
                if exit_reason is not None:
                    return Claim(run=None, done=True, reason=exit_reason)
                reason = "W&B's controller has no run for this agent yet"
                return Claim(run=None, done=False, reason=reason)
        self._cache.clear()
        return Claim(run=claimed)

    def program_env(self, run_id: str) -> dict[str, str]:
        """What a program run's script needs beyond the sweep and run ids to join the W&B
        run issued to it, as `wandb agent` gives it: the sweep's entity and project, and the
        wandb mode the agent runs in ($WANDB_MODE, else online)."""
        row = self._issued.find(run_id)
        if row is None:
            raise NotFoundError(f"run {run_id!r} was not issued to this host")
        ref = sweep_ref(references.find(self.store, row["sweep_id"]))
        return {
            "WANDB_ENTITY": ref.entity,
            "WANDB_PROJECT": ref.project,
            "WANDB_MODE": os.environ.get("WANDB_MODE") or "online",
        }

    # -- reporting -----------------------------------------------------------------

    def log_epoch(self, run_id: str, worker: str, metrics: dict[str, Any]) -> Control:
        """Log the epoch to the W&B run (a program's script logs its own), heartbeat the
        agent, relay W&B's stop command."""
        now = self.now()
        with self.store.transaction(immediate=True) as conn:
            row = RUNS.owned(conn, run_id, worker)
            if row is None:
                return Control.lost
            ref_row = references.find(self.store, row["sweep_id"])
            spec = self._spec(ref_row)
            epoch = int(metrics.get("epoch", row["epochs"] + 1))
            metric = row["metric"]
            if spec.metric_name is not None:
                value = metrics.get(spec.metric_name)
                program = spec.kind == "program"
                metric = engine.reported(metric, value, spec.metric_goal, program)
            conn.execute(
                "UPDATE wandb_runs SET metric = ?, epochs = ?, heartbeat_at = ? WHERE id = ?",
                (metric, max(epoch, row["epochs"]), now, run_id),
            )
        self._cache.clear()
        if spec.kind == "program":
            last = self._step_beats.get(run_id)
            if last is not None and self._clock() - last < PROGRAM_STEP_HEARTBEAT_S:
                return Control.proceed
            self._step_beats[run_id] = self._clock()
        else:
            self._retry(
                f"log epoch {epoch} of run {run_id}",
                self.client.log_epoch,
                sweep_ref(ref_row),
                run_id,
                json.loads(row["config"]),
                metrics,
            )
        return self._control(row, ref_row, worker)

    def heartbeat(self, run_id: str, worker: str) -> Control:
        """Refresh the lease and heartbeat W&B's agent; relay stop, pause and cancel."""
        with self.store.transaction(immediate=True) as conn:
            row = RUNS.beat(conn, run_id, worker, self.now())
            if row is None:
                return Control.lost
            ref_row = references.find(self.store, row["sweep_id"])
        return self._control(row, ref_row, worker)

    def _control(self, row: sqlite3.Row, ref_row: sqlite3.Row, worker: str) -> Control:
        run_id = row["id"]
        agent_id = row["agent_id"] or self._issued.agent(sweep_ref(ref_row), worker)
        commands = self._retry(
            "heartbeat the agent", self.client.agent_heartbeat, agent_id, [run_id]
        )
        self._issued.queue(row["sweep_id"], commands, agent_id)
        # W&B also sends `stop` for the runs of a canceled sweep: the sweep's state says why.
        sweep_control = SWEEP_CONTROL.get(self._record_state(ref_row), Control.proceed)
        if sweep_control != Control.proceed:
            return sweep_control
        rule = (self._spec(ref_row).early_terminate or {}).get("type", "early_terminate")
        reason = stop_reason(commands, run_id, rule)
        if reason is None:
            return Control.proceed
        with self.store.transaction(immediate=True) as conn:
            kept = RUNS.mark_stopping(conn, run_id, worker, reason)
        return Control.stop if kept else Control.lost

    def finish_run(
        self,
        run_id: str,
        worker: str,
        summary: dict[str, Any],
        state: RunState = RunState.finished,
        reason: str | None = None,
    ) -> bool:
        """End the run as finished or stopped, here and on W&B (exit code 0); a program's
        script that finished on its own has ended its W&B run itself."""
        state = RunLedger.finish_state(state)
        with self.store.transaction(immediate=True) as conn:
            row = RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            ref_row = references.find(self.store, row["sweep_id"])
            spec = self._spec(ref_row)
            metric = spec.metric_name, spec.metric_goal
            program = spec.kind == "program"
            ended = RUNS.finish(conn, row, summary, state, reason, metric, self.now(), program)
        if spec.kind == "program" and state == RunState.finished:
            self._cache.clear()
            return True
        self._log_checkpoint(row, ref_row, summary)
        self._end_on_server(ended, ref_row, 0, summary)
        return True

    def fail_run(self, run_id: str, worker: str, error: str, crashed: bool = False) -> bool:
        """End the run as failed (exit code 1 on W&B), or crashed: handed back to W&B to
        resume under the same run id (see the module docstring)."""
        with self.store.transaction(immediate=True) as conn:
            row = RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            ref_row = references.find(self.store, row["sweep_id"])
            now = self.now()
            ended = (
                IssuedRuns.crash(conn, row, error, now)
                if crashed
                else RUNS.fail(conn, row, error, now)
            )
        self._end_on_server(ended, ref_row, 1, preempted=ended.state == RunState.crashed)
        return True

    def requeue_run(self, run_id: str, worker: str, reason: str) -> bool:
        """Hand the run back to W&B: pending here with no agent (so no worker here claims
        it), marked preempting on W&B (exit code 1), whose controller issues it again as
        `resume` to some agent. In a canceled or finished sweep it ends as stopped."""
        found = self._issued.find(run_id)
        if found is None:
            raise NotFoundError(f"no run with id {run_id!r} claimed on this host")
        # Read before the write transaction: the server call must not hold the store's lock.
        sweep_state = self._record_state(references.find(self.store, found["sweep_id"]))
        with self.store.transaction(immediate=True) as conn:
            row = RUNS.owned(conn, run_id, worker)
            if row is None:
                return False
            ref_row = references.find(self.store, row["sweep_id"])
            ended = RUNS.requeue(conn, row, reason, sweep_state, self.now())
            queued = ended.state == RunState.pending
            if queued:
                IssuedRuns.hand_back(conn, run_id)
        self._end_on_server(ended, ref_row, 1 if queued else 0, preempted=queued)
        return True

    def reap_stale(self) -> list[Run]:
        """Crash this host's running runs whose heartbeat is older than their lease (handed
        back to W&B as `fail_run(crashed=True)` does)."""
        now = self.now()
        with self.store.transaction(immediate=True) as conn:
            reaped = [
                (
                    IssuedRuns.crash(
                        conn,
                        row,
                        f"no heartbeat from worker {row['worker']} for "
                        f"{now - row['heartbeat_at']:.1f} s (lease {row['lease_s']:g} s)",
                        now,
                    ),
                    references.find(self.store, row["sweep_id"]),
                )
                for row in self._issued.stale(conn, now)
            ]
        for ended, ref_row in reaped:
            try:
                self._end_on_server(ended, ref_row, 1, preempted=ended.state == RunState.crashed)
            except SweeperError as exc:  # the run stays crashed here; W&B times it out itself
                log.warning("could not hand run %s back to W&B: %s", ended.row["id"], exc)
        return [self.get_run(ended.row["id"]) for ended, _ in reaped]

    def _log_checkpoint(
        self, row: sqlite3.Row, ref_row: sqlite3.Row, summary: dict[str, Any]
    ) -> None:
        """Upload the run's checkpoint as an artifact when $SWEEPER_WANDB_CHECKPOINTS asks,
        with the weights file a head run's checkpoint completes itself from."""
        if os.environ.get(CHECKPOINTS_ENV, "").lower() not in ("1", "true", "yes"):
            return
        path, base = summary.get("checkpoint_path"), summary.get("checkpoint_base")
        if not isinstance(path, str) or not Path(path).is_file():
            return
        self._retry(
            f"upload the checkpoint of run {row['id']}",
            self.client.log_checkpoint,
            sweep_ref(ref_row),
            row["id"],
            json.loads(row["config"]),
            Path(path),
            Path(base) if isinstance(base, str) and Path(base).is_file() else None,
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
        # A program's script set the run's config itself, nested as W&B issued it; the row's
        # is flat, so it is not written over the script's.
        config = {} if self._spec(ref_row).kind == "program" else json.loads(row["config"])
        self._retry(
            f"end run {row['id']}",
            self.client.end_run,
            sweep_ref(ref_row),
            row["id"],
            config,
            engine.plain(
                {
                    **(summary or {}),
                    records.STATE_KEY: ended.state.value,
                    records.REASON_KEY: ended.reason,
                }
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
        ref_row = references.find(self.store, sweep_id)
        found = self._retry(
            f"list the runs of sweep {sweep_id}",
            self.client.list_runs,
            sweep_ref(ref_row),
            with_history,
        )
        local = self._issued.rows(sweep_id)
        runs = [self._merge(ref_row, local.pop(record.id, None), record) for record in found]
        runs += [self._merge(ref_row, row, None) for row in local.values()]
        runs.sort(key=lambda r: r.created_at)
        self._cache[(sweep_id, with_history)] = (time.monotonic(), runs)
        return runs

    def get_run(self, run_id: str) -> Run:
        """One run with its history: this host's record merged with W&B's."""
        row = self._issued.find(run_id)
        refs = (
            [references.find(self.store, row["sweep_id"])]
            if row is not None
            else references.newest_first(self.store)
        )
        for ref_row in refs:
            record = self._retry(
                f"read run {run_id}", self.client.get_run, sweep_ref(ref_row), run_id
            )
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
        spec = self._spec(ref_row)
        program = spec.kind == "program"
        history = records.history(record.history, program) if record is not None else []
        if row is None:
            assert record is not None
            return records.run_from_record(
                ref_row["id"], record, spec.metric_name, spec.metric_goal, program
            )
        run = RUNS.to_run(row, history)
        if record is not None and not run.summary:
            run.summary = records.summary(record.summary)
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
            state=records.sweep_state(record.state),
            method=spec.method,
            metric_name=spec.metric_name,
            metric_goal=spec.metric_goal,
            kind=spec.kind,
            run_cap=spec.run_cap,
            spec=spec.raw,
            url=row["url"],
            created_at=record.created_at or at(row["created_at"]) or datetime.now(timezone.utc),
            run_counts=counts,
        )

    def _record(self, row: sqlite3.Row, fresh: bool = False) -> SweepRecord:
        cached = self._records.get(row["id"])
        if cached is not None and not fresh and time.monotonic() - cached[0] < RUNS_CACHE_S:
            return cached[1]
        record = self._retry(f"read sweep {row['id']}", self.client.get_sweep, sweep_ref(row))
        self._records[row["id"]] = (time.monotonic(), record)
        return record

    def _record_state(self, row: sqlite3.Row, fresh: bool = False) -> SweepState:
        return records.sweep_state(self._record(row, fresh).state)

    def _spec(self, row: sqlite3.Row) -> SweepSpec:
        """The spec the sweep was registered with (kept here, so no server call), read once."""
        spec = self._specs.get(row["id"])
        if spec is None:
            spec = self._specs[row["id"]] = references.spec_of(row)
        return spec

    def _adopt(self, path: str) -> sqlite3.Row:
        """Record the W&B sweep at 'entity/project/id' here (an agent host that did not create
        it); its spec is validated as `sweeper create` would, a program's script included."""
        entity, project, sweep_id = path.split("/")
        ref = SweepRef(entity=entity, project=project, id=sweep_id)
        record = self._retry(f"read sweep {path}", self.client.get_sweep, ref)
        spec = references.server_spec(record.config, f"W&B sweep {path}")
        name = record.name or spec.name or sweep_id
        kept = spec.model_copy(update={"name": name})
        url = self.client.sweep_url(ref)
        references.record(self.store, ref, url, kept, self.now(), replace=False)
        self._records[sweep_id] = (time.monotonic(), record)
        return references.find(self.store, sweep_id)
