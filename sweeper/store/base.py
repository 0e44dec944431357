"""The store interface: one SQL schema, scoped transactions, per-process connections.

A store is a SQL database every sweeper process of a sweep shares: a SQLite file on one
host, or a PostgreSQL database for agents on many. The backends write plain SQL against
the `Connection` a transaction yields (qmark `?` placeholders, `rowid` ordering, `ON
CONFLICT` upserts), and a dialect module makes that SQL mean the same on its database:

- `transaction(immediate=True)` holds the store's write lock from its first statement
  to its commit, so a read-then-write (a claim) is never interleaved with another
  process's write. That is what lets the backends keep every guarantee as
  compare-and-set over rows they read.
- `transaction(immediate=True, scope=...)` narrows that lock where the database can: a
  scope (a sweep's id) excludes the writers of the same scope and the store-wide ones,
  not those of other scopes; `scope=ROWS_ONLY` takes no lock up front, and the
  transaction locks the rows it reads with `LOCK_ROWS` (or skips those locked by others
  with `SKIP_LOCKED`) before it changes them. SQLite has one write lock, so there every
  write transaction holds it, whatever its scope, and those markers are comments.
- `write_batch` runs fixed statements as one immediate transaction; a database behind a
  server gets them in one message, so the transaction's locks are held only while the
  server runs them, never across a round trip to a client that may be waiting for a CPU.
- Reads without `immediate` see one consistent snapshot.
- Driver errors come out as `StoreError`; a connection lost between transactions is
  re-opened with backoff, one lost inside a transaction comes out as `StoreDisconnected`
  (see `retried`).

Connections are opened lazily, one per process and thread (a forked child or a heartbeat
thread gets its own), so a store can be created before forking.
"""

from __future__ import annotations

import functools
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ParamSpec, Protocol, TypeVar

from sweeper.errors import StoreError

#: Bumped whenever the tables change; a store with a higher version was written by a
#: newer sweeper and is refused rather than misread. Version 2 added the wandb_* tables,
#: version 3 the runs' host, version 4 let a sweep have no metric (W&B's grid and random
#: search need none), version 5 counts a sweep's first tries in `sweeps.started` (see
#: `FIRST_TRIES`); an older store is migrated the first time it is opened.
SCHEMA_VERSION = 5

#: Each dialect fills in `{rowid}` (an explicit insertion-order column where the database
#: has no implicit rowid) and `{float}` (a double-precision type: timestamps are epoch
#: seconds).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    {rowid}
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    method TEXT NOT NULL,
    metric_name TEXT,
    metric_goal TEXT NOT NULL,
    run_cap INTEGER,
    spec TEXT NOT NULL,
    done_reason TEXT,
    spec_path TEXT,
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL,
    started INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    {rowid}
    id TEXT PRIMARY KEY,
    sweep_id TEXT NOT NULL REFERENCES sweeps(id),
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    engine_config TEXT NOT NULL,
    config_key TEXT NOT NULL,
    metric {float},
    epochs INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '{{}}',
    reason TEXT,
    worker TEXT,
    host TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    retry_of TEXT REFERENCES runs(id),
    search_info TEXT,
    lease_s {float},
    created_at {float} NOT NULL,
    started_at {float},
    ended_at {float},
    heartbeat_at {float}
);
CREATE INDEX IF NOT EXISTS runs_by_sweep_state ON runs (sweep_id, state);
CREATE INDEX IF NOT EXISTS runs_by_state_heartbeat ON runs (state, heartbeat_at);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS wandb_sweeps (
    {rowid}
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    url TEXT,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at {float} NOT NULL
);
CREATE TABLE IF NOT EXISTS wandb_runs (
    {rowid}
    id TEXT PRIMARY KEY,
    sweep_id TEXT NOT NULL REFERENCES wandb_sweeps(id),
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    worker TEXT,
    host TEXT,
    agent_id TEXT,
    metric {float},
    epochs INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '{{}}',
    reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    retry_of TEXT,
    lease_s {float},
    created_at {float} NOT NULL,
    started_at {float},
    ended_at {float},
    heartbeat_at {float}
);
CREATE INDEX IF NOT EXISTS wandb_runs_by_sweep_state ON wandb_runs (sweep_id, state);
CREATE TABLE IF NOT EXISTS wandb_agents (
    sweep_id TEXT NOT NULL,
    worker TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (sweep_id, worker)
);
CREATE TABLE IF NOT EXISTS wandb_synced (
    run_dir TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    sweep_id TEXT,
    synced_at {float} NOT NULL
);
"""

#: `transaction(immediate=True, scope=ROWS_ONLY)`: no lock up front, only the rows read
#: with `LOCK_ROWS` / `SKIP_LOCKED` (and those the writes change).
ROWS_ONLY = ""
#: Ends a SELECT whose rows the transaction goes on to change: the dialect makes it lock
#: them until the commit (PostgreSQL `FOR UPDATE`; a writer on SQLite holds the whole
#: database already, and reads a comment). Under READ COMMITTED a row another
#: transaction changed meanwhile is read again once its lock is free, and dropped if it
#: no longer matches the WHERE clause: a compare-and-set.
LOCK_ROWS = " /* lock rows */"
#: As `LOCK_ROWS`, but rows another transaction has locked are left out rather than
#: waited for (PostgreSQL `FOR UPDATE SKIP LOCKED`).
SKIP_LOCKED = " /* lock rows, skip locked */"

#: What `sweeps.started` counts: the sweep's runs that are first tries (a crash retry
#: re-runs a config already counted), which is what its run_cap caps. The database keeps
#: it, a trigger adding one in the transaction that inserts such a run (each dialect's
#: `_triggers`), so a claim reads its sweep's count in O(1) rather than counting the
#: sweep's runs, and no code path inserting a run can forget it. Exact under concurrency:
#: claims insert first tries holding their sweep's write lock, and the trigger's UPDATE
#: locks the sweep's row until the commit.
FIRST_TRIES = "SELECT COUNT(*) FROM runs WHERE runs.sweep_id = sweeps.id AND retry_of IS NULL"

#: Columns (table, column, type) added by each version, which a store written at an older
#: version gains when it is opened; tables added since are created by SCHEMA itself.
MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    3: (("runs", "host", "TEXT"), ("wandb_runs", "host", "TEXT")),
    5: (("sweeps", "started", "INTEGER NOT NULL DEFAULT 0"),),
}
#: Statements that fill in what each version's new columns hold for the rows already there.
BACKFILLS: dict[int, tuple[str, ...]] = {
    5: (f"UPDATE sweeps SET started = ({FIRST_TRIES})",),
}
#: Columns (table, column) whose NOT NULL each version dropped.
NULLABLE: dict[int, tuple[tuple[str, str], ...]] = {
    4: (("sweeps", "metric_name"),),
}


class Cursor(Protocol):
    """What a statement returns: rows that index by column name and by position."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Sequence[Any] | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the backends use: `execute` with `?` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


#: One statement of a `Store.write_batch`: its SQL (qmark placeholders) and parameters.
Statement = tuple[str, Sequence[Any]]


class StoreDisconnected(StoreError):
    """The connection to the store's server was lost inside a transaction, which was not
    committed (or its commit was not confirmed). The next transaction reconnects."""


P = ParamSpec("P")
T = TypeVar("T")


def retried(method: Callable[P, T]) -> Callable[P, T]:
    """Run a backend method once more when its connection was lost mid-transaction.

    The second try starts with a fresh connection (re-opened with backoff, or a clear
    `StoreError` when the server stays away). Every backend method is safe to repeat:
    its writes are compare-and-set, so a first try whose commit did land makes the second
    find the work done (a run claimed twice is reaped when its lease runs out).
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except StoreDisconnected:
            return method(*args, **kwargs)

    return wrapper


class Store(ABC):
    """A SQL database shared by every sweeper process of its sweeps.

    Subclasses open connections and say how their database begins, locks and reports
    errors; this class keeps one connection per process and thread and the scoped
    transaction around them.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        # Connections inherited through fork are kept referenced, never used or closed:
        # closing them in the child could disturb the parent's locks and sessions.
        self._inherited: list[Any] = []
        self._opened: list[tuple[int, Any]] = []
        self._lock = threading.Lock()

    # -- what a dialect provides ----------------------------------------------------

    @property
    @abstractmethod
    def url(self) -> str:
        """The store's URL as it may be printed: never with a password."""

    @abstractmethod
    def _open(self) -> Any:
        """A new connection with the schema created or migrated, or StoreError."""

    @abstractmethod
    def _begin(self, conn: Any, immediate: bool, scope: str | None = None) -> None:
        """Start a transaction; `immediate` takes the write lock of `scope` first (see
        `transaction`)."""

    @abstractmethod
    def _in_transaction(self, conn: Any) -> bool:
        """Whether `conn` is inside a transaction."""

    @abstractmethod
    def _columns(self, conn: Any, table: str) -> set[str]:
        """The names of `table`'s columns."""

    @abstractmethod
    def _drop_not_null(self, conn: Any, table: str, column: str, create: str) -> None:
        """Let `table.column` hold NULL, inside the caller's write transaction; `create` is
        the table's CREATE statement as SCHEMA has it now."""

    @abstractmethod
    def _triggers(self) -> list[str]:
        """The statements that create (or replace) the schema's triggers in this
        dialect, run after the tables are created and migrated."""

    @abstractmethod
    def _trigger_drops(self) -> list[str]:
        """The statements that drop the schema's triggers where they exist in this
        dialect, run before the tables are migrated and the triggers made again."""

    @abstractmethod
    def _translate(self, error: Exception) -> StoreError | None:
        """The driver's `error` as a StoreError a user can act on, None if it is no
        driver error."""

    # -- connections ----------------------------------------------------------------

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if conn is not None:
            self._inherited.append(conn)
        conn = self._open()
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._opened.append((os.getpid(), conn))
        return conn

    def _discard(self) -> None:
        """Forget this thread's connection (it broke); the next use opens a new one."""
        conn = getattr(self._local, "conn", None)
        self._local = threading.local()
        if conn is None:
            return
        with self._lock:
            self._opened = [(owner, c) for owner, c in self._opened if c is not conn]
        # A broken connection may fail to close; it is gone either way.
        with suppress(Exception):
            conn.close()

    def _start(self, immediate: bool, scope: str | None) -> Any:
        """This thread's connection inside a new transaction."""
        try:
            conn = self._connection()
            self._begin(conn, immediate, scope)
        except Exception as e:
            translated = self._translate(e)
            if translated is None:
                raise
            raise translated from e
        return conn

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def transaction(self, immediate: bool = False, scope: str | None = None) -> Iterator[Any]:
        """One scoped transaction: commit on success, roll back on any exception.

        `immediate=True` takes a write lock up front (use it for every write, so a
        read-then-write can never be interleaved with another process's): with no
        `scope`, the store-wide one, which every other writer waits for; with a scope (a
        sweep's id), one that only the writers of that scope wait for (and store-wide
        writers); with `ROWS_ONLY`, none: the transaction locks the rows it goes on to
        change as it reads them (`LOCK_ROWS`). Where the database has one write lock
        (SQLite), every write transaction takes it. A nested call joins the outer
        transaction. Driver errors come out as `StoreError`.
        """
        if (conn := self._open_transaction()) is not None:
            yield conn
            return
        conn = self._start(immediate, scope)
        with self._ended(conn):
            yield conn
            conn.execute("COMMIT")

    def write_batch(self, statements: Sequence[Statement], scope: str | None = None) -> list[Any]:
        """Run `statements` in order as one `transaction(immediate=True, scope=scope)` and
        return the rows of the last one: all of them or none take effect.

        For a write whose every statement is known before the first runs (SQL decides
        what each one does). A database behind a server gets them in one message with
        the transaction's BEGIN and COMMIT: one round trip, and the write lock held only
        while the server runs them. Inside an open transaction they join it.
        """
        with self.transaction(immediate=True, scope=scope) as conn:
            rows: list[Any] = []
            for sql, parameters in statements:
                cursor = conn.execute(sql, parameters)
                # All rows (SQLite cannot commit while a RETURNING statement is unfinished),
                # of a statement that returns any (DB-API: it has a description).
                rows = [] if cursor.description is None else cursor.fetchall()
            return rows

    def _open_transaction(self) -> Any:
        """This thread's connection if it is inside a transaction, else None."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid() and self._in_transaction(conn):
            return conn
        return None

    @contextmanager
    def _ended(self, conn: Any) -> Iterator[None]:
        """Roll `conn`'s transaction back on any exception, and raise driver errors as
        StoreError; the body commits."""
        try:
            yield
        except BaseException as e:
            self._abort(conn)
            translated = self._translate(e) if isinstance(e, Exception) else None
            if translated is None:
                raise
            raise translated from e

    def _abort(self, conn: Any) -> None:
        """Roll back; a connection that cannot even do that is dropped."""
        try:
            if self._in_transaction(conn):
                conn.execute("ROLLBACK")
        except Exception:
            self._discard()

    # -- meta -----------------------------------------------------------------------

    def get_current(self) -> str | None:
        """The id of the current sweep (the last created or chosen), or None."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'current_sweep'").fetchone()
        return None if row is None else str(row[0])

    def set_current(self, sweep_id: str) -> None:
        """Make `sweep_id` the default sweep for `agent`, `status` and `report`; inside
        a caller's transaction, as part of it."""
        with self.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('current_sweep', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (sweep_id,),
            )

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the store."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    def _check_version(self, recorded: str | None) -> int | None:
        """The recorded schema version as a number, or StoreError for a newer or
        unreadable one (refused before anything is written)."""
        if recorded is None:
            return None
        try:
            version = int(recorded)
        except ValueError as e:
            raise StoreError(f"{self.url} has an unreadable schema version {recorded!r}") from e
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.url} was written by a newer sweeper (store schema {version}, this "
                f"version reads up to {SCHEMA_VERSION}); upgrade sweeper to use it."
            )
        return version

    def _create_schema(self, conn: Any, recorded: int | None, rowid: str, float_type: str) -> None:
        """Create the tables, migrate an older store and record the version, inside the
        caller's write transaction."""
        statements = [
            statement.strip()
            for statement in SCHEMA.format(rowid=rowid, float=float_type).split(";")
            if statement.strip()
        ]
        for statement in statements:
            conn.execute(statement)
        # Rebuilding a table (SQLite's `_drop_not_null`) trips over a trigger naming it, and
        # a store recorded as older may have them (one written by this version and marked
        # older by hand, or by a tool): they are dropped, and made again below.
        for statement in self._trigger_drops():
            conn.execute(statement)
        if recorded is not None:
            for version in range(recorded + 1, SCHEMA_VERSION + 1):
                for table, column, kind in MIGRATIONS.get(version, ()):
                    # A table SCHEMA just created has the column already.
                    if column not in self._columns(conn, table):
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                for table, column in NULLABLE.get(version, ()):
                    head = f"CREATE TABLE IF NOT EXISTS {table} ("
                    create = next(s for s in statements if s.startswith(head))
                    self._drop_not_null(conn, table, column, create)
                for statement in BACKFILLS.get(version, ()):
                    conn.execute(statement)
        for statement in self._triggers():
            conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )

    def close(self) -> None:
        """Close the connections this process opened; the next use re-opens lazily."""
        pid = os.getpid()
        with self._lock:
            mine = [conn for owner, conn in self._opened if owner == pid]
            self._opened = [(owner, conn) for owner, conn in self._opened if owner != pid]
        for conn in mine:
            conn.close()
        self._local = threading.local()
