"""The embedded default backend: sweeps and runs in the local SQLite store.

Every state change is one `BEGIN IMMEDIATE` transaction, so any number of agent
processes can share one store: a claim (reap stale runs, pick a pending run or ask the
engine for a new config, mark it running) is atomic, and ending a run is
compare-and-set on (state = running, worker = caller).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from sweeper import engine
from sweeper.backends.base import (
    MAX_CRASH_RETRIES,
    Backend,
    Claim,
    Control,
    Run,
    RunState,
    Sweep,
    SweepState,
)
from sweeper.errors import NotFoundError, SweeperError, did_you_mean
from sweeper.paths import Home
from sweeper.spec import SweepSpec
from sweeper.store import Store

_ID_ALPHABET = string.ascii_lowercase + string.digits
#: A sweep reference shorter than this is never matched as an id prefix.
_MIN_PREFIX = 3
_FINAL_SWEEP_STATES = (SweepState.canceled, SweepState.finished)
_ALLOWED = {
    SweepState.running: {SweepState.paused, SweepState.canceled, SweepState.finished},
    SweepState.paused: {SweepState.running, SweepState.canceled, SweepState.finished},
}
_SWEEP_CONTROL = {SweepState.paused: Control.pause, SweepState.canceled: Control.cancel}


def new_id() -> str:
    """A W&B-style id: 8 lowercase letters and digits.

    >>> len(new_id()), new_id().isalnum()
    (8, True)
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _dumps(value: Any) -> str:
    return json.dumps(engine.plain(value))


class LocalBackend(Backend):
    """Sweeps in `home`'s SQLite store; configs from wandb's open-source engine.

    >>> import tempfile
    >>> backend = LocalBackend(Home(tempfile.mkdtemp()))
    >>> backend.list_sweeps()
    []
    """

    name = "local"

    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home()
        self.store = Store(self.home.store_path)

    # -- sweeps --------------------------------------------------------------------

    def create_sweep(self, spec: SweepSpec, name: str | None = None) -> Sweep:
        """Store `spec` as a new running sweep and make it the current one."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            sweep_id = self._unused_id(conn, "sweeps")
            conn.execute(
                "INSERT INTO sweeps (id, name, state, method, metric_name, metric_goal, run_cap,"
                " spec, spec_path, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    name or spec.name or spec.raw.get("name") or sweep_id,
                    SweepState.running.value,
                    spec.method,
                    spec.metric_name,
                    spec.metric_goal,
                    spec.run_cap,
                    spec.model_dump_json(),
                    None if spec.source.startswith("<") else spec.source,
                    now,
                    now,
                ),
            )
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('current_sweep', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (sweep_id,),
            )
            return self._sweep(conn, self._sweep_row(conn, sweep_id))

    def list_sweeps(self) -> list[Sweep]:
        """Every sweep, newest first, with run counts."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM sweeps ORDER BY created_at DESC, rowid DESC"
            ).fetchall()
            return [self._sweep(conn, row) for row in rows]

    def get_sweep(self, ref: str) -> Sweep:
        """The sweep whose id, unique name or unique id prefix (3+ characters) is `ref`."""
        with self.store.transaction() as conn:
            return self._sweep(conn, self._resolve(conn, ref))

    def set_sweep_state(self, sweep_id: str, state: SweepState) -> Sweep:
        """Pause, resume, cancel or finish; canceled and finished are final."""
        state = SweepState(state)
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = self._sweep_row(conn, sweep_id)
            current = SweepState(row["state"])
            if state != current:
                if state not in _ALLOWED.get(current, set()):
                    raise SweeperError(
                        f"sweep {sweep_id} is {current.value}, so it cannot become {state.value}"
                        + (
                            ": canceled and finished sweeps are final."
                            if current in _FINAL_SWEEP_STATES
                            else "."
                        )
                    )
                conn.execute(
                    "UPDATE sweeps SET state = ?, updated_at = ? WHERE id = ?",
                    (state.value, now, sweep_id),
                )
                if state in _FINAL_SWEEP_STATES:
                    # Nothing may wait in the queue of a sweep that will never hand it out.
                    conn.execute(
                        "UPDATE runs SET state = ?, reason = ?, ended_at = ? WHERE sweep_id = ? AND state = ?",
                        (
                            RunState.stopped.value,
                            f"sweep {state.value}",
                            now,
                            sweep_id,
                            RunState.pending.value,
                        ),
                    )
            return self._sweep(conn, self._sweep_row(conn, sweep_id))

    # -- claiming ------------------------------------------------------------------

    def claim_run(self, sweep_id: str, worker: str, lease_s: float = 60.0) -> Claim:
        """Reap stale runs, then hand out the oldest pending run or a new engine config."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            self._reap(conn, now)
            sweep = self._sweep_row(conn, sweep_id)
            if sweep["state"] != SweepState.running.value:
                return Claim(run=None, done=True, reason=f"sweep {sweep['state']}")
            pending = conn.execute(
                "SELECT id FROM runs WHERE sweep_id = ? AND state = ? ORDER BY rowid LIMIT 1",
                (sweep_id, RunState.pending.value),
            ).fetchone()
            if pending is not None:
                run_id = pending["id"]
                conn.execute(
                    "UPDATE runs SET state = ?, worker = ?, lease_s = ?, started_at = ?, heartbeat_at = ?,"
                    " reason = NULL WHERE id = ?",
                    (RunState.running.value, worker, lease_s, now, now, run_id),
                )
                return Claim(run=self._run(conn, run_id))
            done_reason = sweep["done_reason"] or self._cap_reason(conn, sweep)
            proposal: engine.Proposal | None = None
            if done_reason is None:
                spec = self._spec(sweep)
                runs = (
                    self._engine_runs(conn, sweep_id, history=False)
                    if engine.needs_runs(spec)
                    else []
                )
                outcome = engine.propose(spec, runs)
                if isinstance(outcome, engine.Exhausted):
                    done_reason = outcome.reason
                else:
                    proposal = outcome
            if proposal is None:
                conn.execute(
                    "UPDATE sweeps SET done_reason = ? WHERE id = ?", (done_reason, sweep_id)
                )
                self._finish_if_drained(conn, sweep_id, now)
                return Claim(run=None, done=True, reason=done_reason)
            run_id = self._unused_id(conn, "runs")
            conn.execute(
                "INSERT INTO runs (id, sweep_id, state, config, engine_config, config_key, worker,"
                " search_info, lease_s, created_at, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    sweep_id,
                    RunState.running.value,
                    _dumps(proposal.config),
                    _dumps(proposal.engine_config),
                    proposal.config_key,
                    worker,
                    None if proposal.search_info is None else _dumps(proposal.search_info),
                    lease_s,
                    now,
                    now,
                    now,
                ),
            )
            return Claim(run=self._run(conn, run_id))

    @staticmethod
    def _cap_reason(conn: sqlite3.Connection, sweep: sqlite3.Row) -> str | None:
        cap = sweep["run_cap"]
        if cap is None:
            return None
        # Crash retries re-run a config already counted, so only first tries count.
        (started,) = conn.execute(
            "SELECT COUNT(*) FROM runs WHERE sweep_id = ? AND retry_of IS NULL", (sweep["id"],)
        ).fetchone()
        return f"run_cap {cap} reached" if started >= cap else None

    # -- reporting -----------------------------------------------------------------

    def log_epoch(self, run_id: str, worker: str, metrics: dict[str, Any]) -> Control:
        """Append an epoch, update the best metric and heartbeat, and say whether to go on."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = self._run_row(conn, run_id)
            if row["state"] != RunState.running.value or row["worker"] != worker:
                return Control.lost
            sweep = self._sweep_row(conn, row["sweep_id"])
            epoch = int(metrics.get("epoch", row["epochs"] + 1))
            conn.execute(
                "INSERT OR REPLACE INTO epochs (run_id, epoch, metrics) VALUES (?, ?, ?)",
                (run_id, epoch, _dumps(metrics)),
            )
            (epochs,) = conn.execute(
                "SELECT COUNT(*) FROM epochs WHERE run_id = ?", (run_id,)
            ).fetchone()
            best = engine.better(
                row["metric"], metrics.get(sweep["metric_name"]), sweep["metric_goal"]
            )
            conn.execute(
                "UPDATE runs SET metric = ?, epochs = ?, heartbeat_at = ? WHERE id = ?",
                (best, epochs, now, run_id),
            )
            control = _SWEEP_CONTROL.get(SweepState(sweep["state"]), Control.proceed)
            spec = self._spec(sweep)
            if control != Control.proceed or spec.early_terminate is None:
                return control
        with self.store.transaction() as conn:
            runs = self._engine_runs(conn, row["sweep_id"], history=True)
        reason = engine.stop_reason(spec, runs, run_id)
        if reason is None:
            return Control.proceed
        with self.store.transaction(immediate=True) as conn:
            kept = conn.execute(
                "UPDATE runs SET reason = ? WHERE id = ? AND state = ? AND worker = ?",
                (reason, run_id, RunState.running.value, worker),
            ).rowcount
        return Control.stop if kept else Control.lost

    def heartbeat(self, run_id: str, worker: str) -> Control:
        """Refresh the run's heartbeat; `lost` if it is no longer this worker's."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = self._run_row(conn, run_id)
            if row["state"] != RunState.running.value or row["worker"] != worker:
                return Control.lost
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
            sweep = self._sweep_row(conn, row["sweep_id"])
            return _SWEEP_CONTROL.get(SweepState(sweep["state"]), Control.proceed)

    def finish_run(
        self,
        run_id: str,
        worker: str,
        summary: dict[str, Any],
        state: RunState = RunState.finished,
        reason: str | None = None,
    ) -> bool:
        """End a running run as finished or stopped; a stopped run keeps its stored stop reason."""
        state = RunState(state)
        if state not in (RunState.finished, RunState.stopped):
            raise ValueError(f"finish_run ends runs as finished or stopped, not {state.value}")
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = self._owned(conn, run_id, worker)
            if row is None:
                return False
            sweep = self._sweep_row(conn, row["sweep_id"])
            metric = row["metric"]
            if metric is None:
                metric = engine.better(
                    None, summary.get(sweep["metric_name"]), sweep["metric_goal"]
                )
            kept_reason = (reason or row["reason"]) if state == RunState.stopped else reason
            conn.execute(
                "UPDATE runs SET state = ?, summary = ?, reason = ?, metric = ?, ended_at = ?, heartbeat_at = ?"
                " WHERE id = ?",
                (state.value, _dumps(summary), kept_reason, metric, now, now, run_id),
            )
            self._finish_if_drained(conn, row["sweep_id"], now)
            return True

    def fail_run(self, run_id: str, worker: str, error: str, crashed: bool = False) -> bool:
        """End a running run as failed, or as crashed with its config queued again."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = self._owned(conn, run_id, worker)
            if row is None:
                return False
            if crashed:
                self._crash(conn, row, error, now)
            else:
                conn.execute(
                    "UPDATE runs SET state = ?, reason = ?, ended_at = ? WHERE id = ?",
                    (RunState.failed.value, error, now, run_id),
                )
            self._finish_if_drained(conn, row["sweep_id"], now)
            return True

    def requeue_run(self, run_id: str, worker: str, reason: str) -> bool:
        """Put a running run back to pending with its epochs and metrics cleared."""
        now = time.time()
        with self.store.transaction(immediate=True) as conn:
            row = self._owned(conn, run_id, worker)
            if row is None:
                return False
            sweep = self._sweep_row(conn, row["sweep_id"])
            if SweepState(sweep["state"]) in _FINAL_SWEEP_STATES:
                # A final sweep never hands the run out again: end it instead of queueing it.
                conn.execute(
                    "UPDATE runs SET state = ?, reason = ?, ended_at = ? WHERE id = ?",
                    (RunState.stopped.value, f"{reason} (sweep {sweep['state']})", now, run_id),
                )
                return True
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute(
                "UPDATE runs SET state = ?, reason = ?, worker = NULL, metric = NULL, epochs = 0, summary = '{}',"
                " started_at = NULL, heartbeat_at = NULL WHERE id = ?",
                (RunState.pending.value, reason, run_id),
            )
            return True

    def reap_stale(self) -> list[Run]:
        """Crash (and re-queue) every running run whose heartbeat is older than its lease."""
        with self.store.transaction(immediate=True) as conn:
            return [self._run(conn, run_id) for run_id in self._reap(conn, time.time())]

    # -- reading runs --------------------------------------------------------------

    def list_runs(self, sweep_id: str, with_history: bool = True) -> list[Run]:
        """Every run of the sweep, oldest first."""
        with self.store.transaction() as conn:
            self._sweep_row(conn, sweep_id)
            rows = conn.execute(
                "SELECT * FROM runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,)
            ).fetchall()
            histories = self._histories(conn, sweep_id) if with_history else {}
        return [_to_run(row, histories.get(row["id"], [])) for row in rows]

    def get_run(self, run_id: str) -> Run:
        """One run with its history."""
        with self.store.transaction() as conn:
            return self._run(conn, run_id)

    def close(self) -> None:
        """Close this process's store connections."""
        self.store.close()

    # -- helpers -------------------------------------------------------------------

    def _reap(self, conn: sqlite3.Connection, now: float) -> list[str]:
        stale = conn.execute(
            "SELECT * FROM runs WHERE state = ? AND heartbeat_at + lease_s < ? ORDER BY rowid",
            (RunState.running.value, now),
        ).fetchall()
        for row in stale:
            silent = now - row["heartbeat_at"]
            self._crash(
                conn,
                row,
                f"no heartbeat from worker {row['worker']} for {silent:.1f} s (lease {row['lease_s']:g} s)",
                now,
            )
        return [row["id"] for row in stale]

    def _crash(self, conn: sqlite3.Connection, row: sqlite3.Row, error: str, now: float) -> None:
        """Mark a run crashed and queue its config again, or fail it after the last retry."""
        if row["attempt"] >= MAX_CRASH_RETRIES:
            conn.execute(
                "UPDATE runs SET state = ?, reason = ?, ended_at = ? WHERE id = ?",
                (
                    RunState.failed.value,
                    f"crashed {row['attempt'] + 1} times, not retried again; last: {error}",
                    now,
                    row["id"],
                ),
            )
            return
        conn.execute(
            "UPDATE runs SET state = ?, reason = ?, ended_at = ? WHERE id = ?",
            (RunState.crashed.value, error, now, row["id"]),
        )
        conn.execute(
            "INSERT INTO runs (id, sweep_id, state, config, engine_config, config_key, attempt, retry_of,"
            " search_info, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._unused_id(conn, "runs"),
                row["sweep_id"],
                RunState.pending.value,
                row["config"],
                row["engine_config"],
                row["config_key"],
                row["attempt"] + 1,
                row["id"],
                row["search_info"],
                now,
            ),
        )

    @staticmethod
    def _finish_if_drained(conn: sqlite3.Connection, sweep_id: str, now: float) -> None:
        """A sweep with nothing more to hand out is finished once its last run has ended."""
        conn.execute(
            "UPDATE sweeps SET state = ?, updated_at = ? WHERE id = ? AND state = ? AND done_reason IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM runs WHERE sweep_id = ? AND state IN (?, ?))",
            (
                SweepState.finished.value,
                now,
                sweep_id,
                SweepState.running.value,
                sweep_id,
                RunState.pending.value,
                RunState.running.value,
            ),
        )

    @staticmethod
    def _unused_id(conn: sqlite3.Connection, table: str) -> str:
        while True:
            candidate = new_id()
            if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate

    @staticmethod
    def _sweep_row(conn: sqlite3.Connection, sweep_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no sweep with id {sweep_id!r} in the local store")
        return row

    @staticmethod
    def _resolve(conn: sqlite3.Connection, ref: str) -> sqlite3.Row:
        rows = conn.execute("SELECT * FROM sweeps ORDER BY created_at, rowid").fetchall()
        for matches in (
            [r for r in rows if r["id"] == ref],
            [r for r in rows if r["name"] == ref],
            [r for r in rows if len(ref) >= _MIN_PREFIX and r["id"].startswith(ref)],
        ):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                ids = ", ".join(r["id"] for r in matches)
                raise NotFoundError(
                    f"{ref!r} matches {len(matches)} sweeps ({ids}); give the sweep id"
                )
        known = [r["id"] for r in rows] + [r["name"] for r in rows]
        hint = did_you_mean(ref, known) or (
            " (no sweeps yet: run `sweeper create`)" if not rows else ""
        )
        raise NotFoundError(f"no sweep {ref!r} in the local store{hint}")

    def _sweep(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Sweep:
        counts = {
            r["state"]: r["n"]
            for r in conn.execute(
                "SELECT state, COUNT(*) AS n FROM runs WHERE sweep_id = ? GROUP BY state",
                (row["id"],),
            )
        }
        spec = self._spec(row)
        return Sweep(
            id=row["id"],
            name=row["name"],
            backend=self.name,
            state=SweepState(row["state"]),
            method=row["method"],
            metric_name=row["metric_name"],
            metric_goal=row["metric_goal"],
            run_cap=row["run_cap"],
            spec=spec.raw,
            spec_path=row["spec_path"],
            url=None,
            created_at=_dt(row["created_at"]),
            run_counts=counts,
        )

    @staticmethod
    def _spec(row: sqlite3.Row) -> SweepSpec:
        return SweepSpec.model_validate_json(row["spec"])

    @staticmethod
    def _run_row(conn: sqlite3.Connection, run_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no run with id {run_id!r} in the local store")
        return row

    @classmethod
    def _owned(cls, conn: sqlite3.Connection, run_id: str, worker: str) -> sqlite3.Row | None:
        """The run's row if it is running for `worker`, else None (it was reaped or re-queued)."""
        row = cls._run_row(conn, run_id)
        if row["state"] != RunState.running.value or row["worker"] != worker:
            return None
        return row

    def _run(self, conn: sqlite3.Connection, run_id: str) -> Run:
        row = self._run_row(conn, run_id)
        history = [
            json.loads(r["metrics"])
            for r in conn.execute(
                "SELECT metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
            )
        ]
        return _to_run(row, history)

    @staticmethod
    def _histories(conn: sqlite3.Connection, sweep_id: str) -> dict[str, list[dict[str, Any]]]:
        histories: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in conn.execute(
            "SELECT e.run_id, e.metrics FROM epochs e JOIN runs r ON r.id = e.run_id"
            " WHERE r.sweep_id = ? ORDER BY e.run_id, e.epoch",
            (sweep_id,),
        ):
            histories[r["run_id"]].append(json.loads(r["metrics"]))
        return histories

    def _engine_runs(
        self, conn: sqlite3.Connection, sweep_id: str, history: bool
    ) -> list[engine.EngineRun]:
        histories = self._histories(conn, sweep_id) if history else {}
        # Rows come from our own table, so pydantic's validation is skipped: claims stay O(1) per run.
        return [
            engine.EngineRun.model_construct(
                id=r["id"],
                state=RunState(r["state"]),
                engine_config=json.loads(r["engine_config"]),
                config_key=r["config_key"],
                metric=r["metric"],
                history=histories.get(r["id"], []),
            )
            for r in conn.execute(
                "SELECT id, state, engine_config, config_key, metric FROM runs WHERE sweep_id = ? ORDER BY rowid",
                (sweep_id,),
            )
        ]


def _to_run(row: sqlite3.Row, history: list[dict[str, Any]]) -> Run:
    return Run(
        id=row["id"],
        sweep_id=row["sweep_id"],
        state=RunState(row["state"]),
        config=json.loads(row["config"]),
        metric=row["metric"],
        epochs=row["epochs"],
        history=history,
        summary=json.loads(row["summary"]),
        reason=row["reason"],
        worker=row["worker"],
        attempt=row["attempt"],
        retry_of=row["retry_of"],
        search_info=None if row["search_info"] is None else json.loads(row["search_info"]),
        created_at=_dt(row["created_at"]),
        started_at=None if row["started_at"] is None else _dt(row["started_at"]),
        ended_at=None if row["ended_at"] is None else _dt(row["ended_at"]),
        heartbeat_at=None if row["heartbeat_at"] is None else _dt(row["heartbeat_at"]),
    )
