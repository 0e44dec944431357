"""The SQLite store (the default): one file under the home, in WAL mode, shared by every
process on this host.

Writers open with `BEGIN IMMEDIATE`, SQLite's database-wide write lock, whatever the
transaction's scope, so two processes never interleave a read-then-write (a claim), and a
busy store is waited for (busy_timeout plus a jittered retry) instead of surfacing
"database is locked". The backends' SQL is SQLite's own, so no statement is rewritten
(the row-lock markers `LOCK_ROWS` / `SKIP_LOCKED` are SQL comments).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

from sweeper.errors import StoreError
from sweeper.store.base import SCHEMA_VERSION, Store

#: `sweeps.started` kept by the database (see `sweeper.store.base.FIRST_TRIES`).
_COUNT_FIRST_TRIES = (
    "CREATE TRIGGER IF NOT EXISTS runs_count_first_tries AFTER INSERT ON runs"
    " WHEN NEW.retry_of IS NULL"
    " BEGIN UPDATE sweeps SET started = started + 1 WHERE id = NEW.sweep_id; END"
)

#: Below this much free space a failing write is reported as a full disk.
_LOW_SPACE_BYTES = 256 * 1024
#: Per statement, SQLite itself waits this long for a lock before reporting busy.
_BUSY_TIMEOUT_MS = 5_000
#: On top of busy_timeout, BEGIN IMMEDIATE is retried with jittered backoff this long.
_LOCK_PATIENCE_S = 120.0
#: Longest sleep between BEGIN IMMEDIATE attempts.
_MAX_BACKOFF_S = 0.5


class SQLiteStore(Store):
    """A SQLite file shared by every sweeper process on this host.

    >>> import tempfile
    >>> store = SQLiteStore(Path(tempfile.mkdtemp()) / "store.db")
    >>> store.set_current("abc12345"); store.get_current()
    'abc12345'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

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
            recorded = self._check_version(self._recorded_version(conn))
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if recorded != SCHEMA_VERSION:
                self._begin(conn, immediate=True)
                try:
                    # Read again under the lock: another process may have just migrated.
                    recorded = self._check_version(self._recorded_version(conn))
                    self._create_schema(conn, recorded, rowid="", float_type="REAL")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            # Only now: a migration that rebuilds a table needs foreign keys off (SQLite's
            # documented procedure), and the pragma is a no-op inside a transaction.
            conn.execute("PRAGMA foreign_keys = ON")
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
        connections in other threads. `_recorded_version` recognises a foreign file instead.
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

    def _translate(self, error: Exception) -> StoreError | None:
        return self._explain(error) if isinstance(error, sqlite3.Error) else None

    def _recorded_version(self, conn: sqlite3.Connection) -> str | None:
        """The schema version in the file, None for a new one; a corrupt file is refused
        before anything is written."""
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
        return None if row is None else str(row[0])

    def _columns(self, conn: sqlite3.Connection, table: str) -> set[str]:
        return {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}

    def _drop_not_null(
        self, conn: sqlite3.Connection, table: str, column: str, create: str
    ) -> None:
        """SQLite cannot alter a column: the table is rebuilt from `create` and its rows
        copied with their rowids (which order them), as SQLite's ALTER TABLE page says, with
        foreign keys off so that the tables referring to it keep their rows."""
        columns = ", ".join(sorted(self._columns(conn, table)))
        conn.execute(create.replace(f" {table} (", f" {table}_relaxed (", 1))
        conn.execute(
            f"INSERT INTO {table}_relaxed (rowid, {columns}) SELECT rowid, {columns} FROM {table}"
        )
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_relaxed RENAME TO {table}")

    def _triggers(self) -> list[str]:
        return [_COUNT_FIRST_TRIES]

    def _trigger_drops(self) -> list[str]:
        return ["DROP TRIGGER IF EXISTS runs_count_first_tries"]

    def _in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def _begin(self, conn: sqlite3.Connection, immediate: bool, scope: str | None = None) -> None:
        # One write lock for the whole file: a scope narrows nothing here.
        if immediate:
            self._begin_immediate(conn)
        else:
            conn.execute("BEGIN")

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
