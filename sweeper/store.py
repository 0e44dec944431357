"""The local SQLite store: one file under the home, in WAL mode, shared by every process.

`Store` owns the connection handling and the schema; `sweeper.backends.local` owns the
queries. Every read and write goes through `Store.transaction`, which commits or rolls
back and turns sqlite3 errors into `StoreError`. Writers open with `BEGIN IMMEDIATE`, so
two processes never interleave a read-then-write (a claim), and a busy store is waited
for (busy_timeout plus a jittered retry) instead of surfacing "database is locked".
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sweeper.errors import StoreError

#: Bumped whenever the tables change; a store with a higher version was written by a
#: newer sweeper and is refused rather than misread. Version 2 added the wandb_* tables;
#: an older store gains them (and the new version) the first time it is opened.
SCHEMA_VERSION = 2

#: Below this much free space a failing write is reported as a full disk.
_LOW_SPACE_BYTES = 256 * 1024
#: Per statement, SQLite itself waits this long for a lock before reporting busy.
_BUSY_TIMEOUT_MS = 5_000
#: On top of busy_timeout, BEGIN IMMEDIATE is retried with jittered backoff this long.
_LOCK_PATIENCE_S = 120.0
#: Longest sleep between BEGIN IMMEDIATE attempts.
_MAX_BACKOFF_S = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    method TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    metric_goal TEXT NOT NULL,
    run_cap INTEGER,
    spec TEXT NOT NULL,
    done_reason TEXT,
    spec_path TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    sweep_id TEXT NOT NULL REFERENCES sweeps(id),
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    engine_config TEXT NOT NULL,
    config_key TEXT NOT NULL,
    metric REAL,
    epochs INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '{}',
    reason TEXT,
    worker TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    retry_of TEXT REFERENCES runs(id),
    search_info TEXT,
    lease_s REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL
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
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    project TEXT NOT NULL,
    url TEXT,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS wandb_runs (
    id TEXT PRIMARY KEY,
    sweep_id TEXT NOT NULL REFERENCES wandb_sweeps(id),
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    worker TEXT,
    agent_id TEXT,
    metric REAL,
    epochs INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '{}',
    reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    retry_of TEXT,
    lease_s REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL
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
    synced_at REAL NOT NULL
);
"""


class Store:
    """A SQLite file shared by every sweeper process on this host.

    Connections are opened lazily, one per process and thread (a forked child or a
    heartbeat thread gets its own), so the object can be created before forking.

    >>> import tempfile
    >>> store = Store(Path(tempfile.mkdtemp()) / "store.db")
    >>> store.set_current("abc12345"); store.get_current()
    'abc12345'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # Connections inherited through fork are kept referenced, never used or closed:
        # closing them in the child could disturb the parent's locks.
        self._inherited: list[sqlite3.Connection] = []
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._lock = threading.Lock()

    # -- connections ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
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

    def _open(self) -> sqlite3.Connection:
        self._prepare_file()
        try:
            # Each thread has its own connection; check_same_thread=False only lets
            # close() release them all from one thread at shutdown.
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise self._explain(e) from e
        try:
            conn.row_factory = sqlite3.Row
            self._check_version(conn)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._create_schema(conn)
        except sqlite3.Error as e:
            conn.close()
            raise self._explain(e) from e
        except StoreError:
            conn.close()
            raise
        return conn

    def _prepare_file(self) -> None:
        """Create the home (0700) and an empty db file (0600) if there is none yet.

        An existing file is never opened here: on POSIX, closing any handle to the database
        drops every lock this process holds on it, including those of live SQLite
        connections in other threads. `_check_version` recognises a foreign file instead.
        """
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700)
            if self.path.exists():
                return
            # An empty file is a valid empty database; creating it ourselves fixes its mode,
            # and SQLite gives the -wal and -shm files the same mode.
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            return
        except OSError as e:
            raise StoreError(
                f"cannot create the store {self.path}: {e.strerror or e}. "
                "Check that the sweeper home is writable or choose another with --home / SWEEPER_HOME."
            ) from e

    def _explain(self, error: sqlite3.Error) -> StoreError:
        """Say what is wrong in words a user can act on: SQLite reports a full disk or a
        read-only file system as "disk I/O error", which is no reason to move the store away."""
        folder = self.path.parent
        try:
            stats = os.statvfs(folder)
            read_only = bool(stats.f_flag & os.ST_RDONLY) or not os.access(folder, os.W_OK)
            full = stats.f_bavail * stats.f_frsize < _LOW_SPACE_BYTES
        except OSError:
            read_only = full = False
        text = str(error).lower()
        hint = "or choose another home with --home / SWEEPER_HOME."
        if read_only or "readonly" in text:
            return StoreError(
                f"the sweeper home {folder} is read-only (a read-only file system or no write "
                f"permission), so the store {self.path.name} cannot be used: make it writable {hint}"
            )
        if full or "disk is full" in text:
            return StoreError(
                f"the disk holding the sweeper home {folder} is full, so the store "
                f"{self.path.name} cannot be written: free space there {hint}"
            )
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"{self.path} is not a sweeper store, or is damaged ({error}); move it away "
                "or point --home / SWEEPER_HOME at another folder."
            )
        return StoreError(f"cannot use the store {self.path}: {error}")

    def _check_version(self, conn: sqlite3.Connection) -> None:
        """Refuse a corrupt file or a newer schema before anything is written."""
        try:
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            row = (
                conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if has_meta
                else None
            )
        except sqlite3.DatabaseError as e:
            raise self._explain(e) from e
        if row is None:
            return
        try:
            version = int(row[0])
        except ValueError as e:
            raise StoreError(f"{self.path} has an unreadable schema version {row[0]!r}") from e
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer sweeper (store schema {version}, this "
                f"version reads up to {SCHEMA_VERSION}); upgrade sweeper to use it."
            )

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        self._begin_immediate(conn)
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            # Migration: every change so far only adds tables, created above if missing.
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
                (str(SCHEMA_VERSION), SCHEMA_VERSION),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retried with jittered backoff while another writer holds the lock."""
        deadline = time.monotonic() + _LOCK_PATIENCE_S
        delay = 0.005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the store {self.path} stayed locked by another process for "
                        f"{_LOCK_PATIENCE_S:.0f} s; is a stuck sweeper process holding it?"
                    ) from e
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, _MAX_BACKOFF_S)

    # -- transactions --------------------------------------------------------------

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One scoped transaction: commit on success, roll back on any exception.

        `immediate=True` takes the write lock up front (use it for every write, so a
        read-then-write can never be interleaved with another process's). A nested call
        joins the outer transaction. sqlite3 errors come out as `StoreError`.
        """
        try:
            conn = self._connection()
            if conn.in_transaction:
                yield conn
                return
            if immediate:
                self._begin_immediate(conn)
            else:
                conn.execute("BEGIN")
        except sqlite3.Error as e:
            raise self._explain(e) from e
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(conn)
            raise self._explain(e) from e
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    # -- meta ----------------------------------------------------------------------

    def get_current(self) -> str | None:
        """The id of the current sweep (the last created or chosen), or None."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'current_sweep'").fetchone()
        return None if row is None else str(row[0])

    def set_current(self, sweep_id: str) -> None:
        """Make `sweep_id` the default sweep for `agent`, `status` and `report`."""
        with self.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('current_sweep', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (sweep_id,),
            )

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the connections this process opened; the next use re-opens lazily."""
        pid = os.getpid()
        with self._lock:
            mine = [conn for owner, conn in self._opened if owner == pid]
            self._opened = [(owner, conn) for owner, conn in self._opened if owner != pid]
        for conn in mine:
            conn.close()
        self._local = threading.local()
