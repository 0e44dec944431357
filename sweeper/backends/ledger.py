"""Run bookkeeping that both backends keep the same way, in a store's table of runs.

The local backend keeps every run in `runs`; the W&B backend keeps this host's claims in
`wandb_runs`. Both tables have the same bookkeeping columns (id, sweep_id, state, config,
worker, lease_s, heartbeat_at, metric, epochs, summary, reason, attempt, retry_of,
created_at, started_at, ended_at), and the rules over them are those of
`sweeper.backends.base`: a running run belongs to the worker that claimed it, ending it
is compare-and-set, a crashed run's config is queued again as a new pending run at most
`MAX_CRASH_RETRIES` times. `RunLedger` states those rules once, for either table.

Every method works on the caller's connection inside the caller's transaction (a
`Store.transaction(immediate=True)` for the ones that write), so a backend combines them
with its own statements in one atomic step. None of them commits. The SQL is the
store's portable dialect (`sweeper.store.base`), so a ledger works on SQLite and
PostgreSQL alike. The methods that change a run lock its row first (`owned`, `reap`),
so they are compare-and-set in a transaction that holds no wider lock
(`scope=ROWS_ONLY`) too: a row changed meanwhile is read again under the lock.

The small helpers both backends write rows with live here too: `new_id`, `dumps`, `at`.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sweeper import engine
from sweeper.errors import NotFoundError
from sweeper.models import MAX_CRASH_RETRIES, Run, RunState, SweepState
from sweeper.store.base import LOCK_ROWS, SKIP_LOCKED, Connection

#: Sweep states that never hand out a run again.
FINAL_SWEEP_STATES = (SweepState.canceled, SweepState.finished)
_ID_ALPHABET = string.ascii_lowercase + string.digits

#: A row of a store: `Row` or the PostgreSQL store's `Row`, both indexable by
#: column name and by position.
Row = Any


def new_id() -> str:
    """A W&B-style id: 8 lowercase letters and digits, for sweeps and runs alike.

    >>> made = new_id()
    >>> len(made), made.isalnum(), made == made.lower()
    (8, True, True)
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def dumps(value: Any) -> str:
    """`value` as the JSON text a store column keeps (numpy scalars and the like as plain values).

    >>> dumps({"lr": 0.001, "layers": (1, 2)})
    '{"lr": 0.001, "layers": [1, 2]}'
    """
    return json.dumps(engine.plain(value))


def at(ts: float | None) -> datetime | None:
    """A stored timestamp (epoch seconds) as an aware UTC datetime.

    >>> at(0).isoformat(), at(None)
    ('1970-01-01T00:00:00+00:00', None)
    """
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


class Ended(NamedTuple):
    """A run that left `running`: its row as it was, and the state and reason it got."""

    row: Row
    state: RunState
    reason: str | None
    #: What the ending statement returned (`finish`'s `returning`), None if nothing.
    returned: Row | None = None


class RunLedger:
    """The bookkeeping of one runs table.

    Args:
        table: the table's name. It is written into the SQL, so it must be a constant.
        place: where the table's runs are, for NotFoundError ("in the local store").
        new_id: makes a candidate id for a new run (see `unused_id`), such as a crashed
            run's retry.
        carried: columns besides `config` that a crashed run's retry copies from it.
    """

    def __init__(
        self,
        table: str,
        place: str,
        new_id: Callable[[], str],
        carried: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.place = place
        self.new_id = new_id
        self.carried = tuple(carried)

    # -- reading -------------------------------------------------------------------

    def row(self, conn: Connection, run_id: str, also: str = "", lock: bool = False) -> Row:
        """The run's row.

        Args:
            also: more columns for the same query (", expression AS name, ..."), such as
                its sweep's, read in the same round trip. Written into the SQL: a constant.
            lock: lock the row until the transaction ends (`LOCK_ROWS`), waiting for
                another transaction that holds it; the row is then read as it committed.
        Raises:
            NotFoundError: the table has no such run.
        """
        locking = LOCK_ROWS if lock else ""
        row = conn.execute(
            f"SELECT *{also} FROM {self.table} WHERE id = ?{locking}", (run_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no run with id {run_id!r} {self.place}")
        return row

    def owned(self, conn: Connection, run_id: str, worker: str, also: str = "") -> Row | None:
        """The run's row (with the columns `also` adds, as in `row`), locked until the
        transaction ends, if it is running for `worker`, else None (it was reaped or
        re-queued).

        Raises:
            NotFoundError: the table has no such run.
        """
        row = self.row(conn, run_id, also, lock=True)
        if row["state"] != RunState.running.value or row["worker"] != worker:
            return None
        return row

    @staticmethod
    def to_run(
        row: Row,
        history: list[dict[str, Any]],
        search_info: dict[str, Any] | None = None,
    ) -> Run:
        """A Run from a row of the table, with the epochs and search info kept elsewhere."""
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
            host=row["host"],
            attempt=row["attempt"],
            retry_of=row["retry_of"],
            search_info=search_info,
            created_at=datetime.fromtimestamp(row["created_at"], tz=timezone.utc),
            started_at=at(row["started_at"]),
            ended_at=at(row["ended_at"]),
            heartbeat_at=at(row["heartbeat_at"]),
        )

    def unused_id(self, conn: Connection) -> str:
        """A fresh id from `new_id` that no run in the table has."""
        while True:
            candidate = self.new_id()
            if (
                conn.execute(f"SELECT 1 FROM {self.table} WHERE id = ?", (candidate,)).fetchone()
                is None
            ):
                return candidate

    # -- claiming and reporting ----------------------------------------------------

    def claim_pending(
        self,
        conn: Connection,
        sweep_id: str,
        worker: str,
        lease_s: float,
        now: float,
        prefer: tuple[str, str | None] | None = None,
        host: str | None = None,
    ) -> str | None:
        """Mark the sweep's oldest pending run running for `worker` on `host`, with a
        fresh lease.

        Args:
            prefer: (column, value): pending runs whose column is the value go first
                (W&B hands its runs to one agent, so that agent's own are taken first).
                The column is written into the SQL, so it must be a constant.
        Returns:
            The claimed run's id, or None when the sweep has no pending run.
        """
        order = "rowid"
        params: tuple[str | None, ...] = (sweep_id, RunState.pending.value)
        if prefer is not None:
            column, value = prefer
            # COALESCE rather than `IS ?`, which PostgreSQL does not take with a parameter.
            order = f"(COALESCE({column}, '') = COALESCE(?, '')) DESC, rowid"
            params = (*params, value)
        # One statement: the oldest pending run is picked and marked in one round trip.
        claimed = conn.execute(
            f"UPDATE {self.table} SET state = ?, worker = ?, host = ?, lease_s = ?,"
            " started_at = ?, heartbeat_at = ?, reason = NULL"
            f" WHERE id = (SELECT id FROM {self.table} WHERE sweep_id = ? AND state = ?"
            f" ORDER BY {order} LIMIT 1) RETURNING id",
            (RunState.running.value, worker, host, lease_s, now, now, *params),
        ).fetchall()  # all: SQLite cannot commit while a RETURNING statement is unfinished
        return str(claimed[0]["id"]) if claimed else None

    def beat(self, conn: Connection, run_id: str, worker: str, now: float) -> Row | None:
        """Refresh the heartbeat of a run running for `worker`.

        Returns:
            The run's row as it was, or None when it is not `worker`'s any more.
        """
        row = self.owned(conn, run_id, worker)
        if row is not None:
            conn.execute(f"UPDATE {self.table} SET heartbeat_at = ? WHERE id = ?", (now, run_id))
        return row

    def mark_stopping(self, conn: Connection, run_id: str, worker: str, reason: str) -> bool:
        """Record why a run running for `worker` is being stopped early; `finish` with
        `RunState.stopped` keeps that reason when the worker gives none.

        Returns:
            False when the run is not `worker`'s any more.
        """
        return bool(
            conn.execute(
                f"UPDATE {self.table} SET reason = ? WHERE id = ? AND state = ? AND worker = ?",
                (reason, run_id, RunState.running.value, worker),
            ).rowcount
        )

    # -- ending --------------------------------------------------------------------

    @staticmethod
    def finish_state(state: RunState | str) -> RunState:
        """`state` as a RunState, checked to be one `finish` ends runs in.

        Raises:
            ValueError: it is neither finished nor stopped.
        """
        state = RunState(state)
        if state not in (RunState.finished, RunState.stopped):
            raise ValueError(f"finish_run ends runs as finished or stopped, not {state.value}")
        return state

    def finish(
        self,
        conn: Connection,
        row: Row,
        summary: dict[str, Any],
        state: RunState,
        reason: str | None,
        metric: tuple[str | None, str],
        now: float,
        program: bool = False,
        returning: str = "",
    ) -> Ended:
        """End an owned run as `state` (see `finish_state`) with its final summary.

        A stopped run keeps the reason recorded by `mark_stopping` unless `reason` is
        given. A trainer run keeps its best epoch as its metric, the summary's when it
        reported no epochs; a program run takes the summary's (W&B's meaning).

        Args:
            row: the run's row, from `owned`.
            metric: the sweep's metric name (None: no metric) and goal ("maximize" or
                "minimize").
            program: the run is a program sweep's.
            returning: expressions the UPDATE returns ("expression AS name, ..."), read
                in the same round trip as `Ended.returned`. Written into the SQL: a
                constant.
        """
        best = row["metric"]
        name, goal = metric
        if name is not None and (best is None or program):
            best = engine.reported(best, summary.get(name), goal, program=True)
        kept = (reason or row["reason"]) if state == RunState.stopped else reason
        returned = conn.execute(
            f"UPDATE {self.table} SET state = ?, summary = ?, reason = ?, metric = ?,"
            f" ended_at = ?, heartbeat_at = ? WHERE id = ?{' RETURNING ' if returning else ''}"
            + returning,
            (state.value, dumps(summary), kept, best, now, now, row["id"]),
        )
        # all: SQLite cannot commit while a RETURNING statement is unfinished
        return Ended(row, state, kept, returned.fetchall()[0] if returning else None)

    def fail(
        self,
        conn: Connection,
        row: Row,
        error: str,
        now: float,
        crashed: bool = False,
    ) -> Ended:
        """End an owned run as failed, or as crashed with its config queued again (`crash`)."""
        if crashed:
            return self.crash(conn, row, error, now)
        self._end(conn, row, RunState.failed, error, now)
        return Ended(row, RunState.failed, error)

    def crash(self, conn: Connection, row: Row, error: str, now: float) -> Ended:
        """Mark a run crashed and queue its config again as a new pending run (attempt + 1,
        retry_of the run); a run already retried `MAX_CRASH_RETRIES` times ends as failed."""
        if row["attempt"] >= MAX_CRASH_RETRIES:
            reason = f"crashed {row['attempt'] + 1} times, not retried again; last: {error}"
            self._end(conn, row, RunState.failed, reason, now)
            return Ended(row, RunState.failed, reason)
        self._end(conn, row, RunState.crashed, error, now)
        columns = ("id", "sweep_id", "state", "config", "attempt", "retry_of", "created_at")
        values = (
            self.unused_id(conn),
            row["sweep_id"],
            RunState.pending.value,
            row["config"],
            row["attempt"] + 1,
            row["id"],
            now,
            *(row[column] for column in self.carried),
        )
        conn.execute(
            f"INSERT INTO {self.table} ({', '.join(columns + self.carried)})"
            f" VALUES ({', '.join('?' * len(values))})",
            values,
        )
        return Ended(row, RunState.crashed, error)

    def requeue(
        self,
        conn: Connection,
        row: Row,
        reason: str,
        sweep_state: SweepState,
        now: float,
    ) -> Ended:
        """Put an owned run back to pending with its worker, metric, epochs, summary and
        times cleared; in a final sweep, which never hands it out again, stop it instead."""
        if sweep_state in FINAL_SWEEP_STATES:
            stopped = f"{reason} (sweep {sweep_state.value})"
            self._end(conn, row, RunState.stopped, stopped, now)
            return Ended(row, RunState.stopped, stopped)
        conn.execute(
            f"UPDATE {self.table} SET state = ?, reason = ?, worker = NULL, metric = NULL,"
            " epochs = 0, summary = '{}', started_at = NULL, heartbeat_at = NULL WHERE id = ?",
            (RunState.pending.value, reason, row["id"]),
        )
        return Ended(row, RunState.pending, reason)

    def stale(self, now: float) -> tuple[str, tuple[str, float]]:
        """An SQL expression and its parameters: whether `reap` would find a run to crash
        now, for a caller to ask along with another query and reap only then.

        >>> RunLedger("runs", "here", new_id).stale(10.0)[1]
        ('running', 10.0)
        """
        return (
            f"EXISTS (SELECT 1 FROM {self.table} WHERE state = ? AND heartbeat_at + lease_s < ?)",
            (RunState.running.value, now),
        )

    def reap(self, conn: Connection, now: float) -> list[Ended]:
        """`crash` every running run (of any sweep) whose heartbeat is older than its lease.

        Each is locked and re-checked as it is read; one whose row another transaction
        holds is skipped (`SKIP_LOCKED`): its worker is reporting right now (a heartbeat
        or its end), or another reaper has it.

        Returns:
            The runs crashed (or failed after their last retry), oldest first.
        """
        stale = conn.execute(
            f"SELECT * FROM {self.table} WHERE state = ? AND heartbeat_at + lease_s < ?"
            f" ORDER BY rowid{SKIP_LOCKED}",
            (RunState.running.value, now),
        ).fetchall()
        return [
            self.crash(
                conn,
                row,
                f"no heartbeat from worker {row['worker']} for {now - row['heartbeat_at']:.1f} s"
                f" (lease {row['lease_s']:g} s)",
                now,
            )
            for row in stale
        ]

    def stop_pending(
        self, conn: Connection, sweep_id: str, sweep_state: SweepState, now: float
    ) -> None:
        """Stop the sweep's pending runs: a sweep that became final never hands them out."""
        conn.execute(
            f"UPDATE {self.table} SET state = ?, reason = ?, ended_at = ?"
            " WHERE sweep_id = ? AND state = ?",
            (
                RunState.stopped.value,
                f"sweep {sweep_state.value}",
                now,
                sweep_id,
                RunState.pending.value,
            ),
        )

    def _end(self, conn: Connection, row: Row, state: RunState, reason: str, now: float) -> None:
        """Give a run a final state and the reason for it."""
        conn.execute(
            f"UPDATE {self.table} SET state = ?, reason = ?, ended_at = ? WHERE id = ?",
            (state.value, reason, now, row["id"]),
        )
